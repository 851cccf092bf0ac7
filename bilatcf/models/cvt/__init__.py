"""CVT, cross-view transformer (van Tulder et al., MICCAI 2021; see docs/models/cvt.md)."""

from bilatcf.models import lazy_exports

__all__ = ["CVT"]
__getattr__ = lazy_exports(__name__, __all__)
