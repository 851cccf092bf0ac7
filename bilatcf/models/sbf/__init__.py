"""SBF baseline (see docs/models/sbf.md)."""

from bilatcf.models import lazy_exports

__all__ = ["SBF"]
__getattr__ = lazy_exports(__name__, __all__)
