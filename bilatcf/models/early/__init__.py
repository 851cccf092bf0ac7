"""Image-level early fusion (see docs/models/early.md)."""

from bilatcf.models import lazy_exports

__all__ = ["EarlyFusion"]
__getattr__ = lazy_exports(__name__, __all__)
