"""Fixed-Point GAN (Siddiquee et al., ICCV 2019) as a bilateral classification baseline: translation to normal."""

from bilatcf.models import lazy_exports

__all__ = ["FixedPointGAN"]
__getattr__ = lazy_exports(__name__, __all__)
