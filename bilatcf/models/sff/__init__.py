"""SFF baseline (see docs/models/sff.md)."""

from bilatcf.models import lazy_exports

__all__ = ["SFF"]
__getattr__ = lazy_exports(__name__, __all__)
