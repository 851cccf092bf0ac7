"""Late fusion: DisAsymNet's classifier without its asymmetric transformer (see docs/models/latefusion.md)."""

from bilatcf.models import lazy_exports

__all__ = ["LateFusion"]
__getattr__ = lazy_exports(__name__, __all__)
