"""BR-GAN (Wang et al., MICCAI 2020): a feature-level bilateral cycle with a residual-preserved module."""

from bilatcf.models import lazy_exports

__all__ = ["BRGAN"]
__getattr__ = lazy_exports(__name__, __all__)
