"""GF baseline (see docs/models/gf.md)."""

from bilatcf.models import lazy_exports

__all__ = ["GF"]
__getattr__ = lazy_exports(__name__, __all__)
