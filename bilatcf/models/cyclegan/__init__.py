"""CycleGAN (Zhu et al., ICCV 2017) as a bilateral classification baseline: abnormal → normal image translation."""

from bilatcf.models import lazy_exports

__all__ = ["CycleGAN"]
__getattr__ = lazy_exports(__name__, __all__)
