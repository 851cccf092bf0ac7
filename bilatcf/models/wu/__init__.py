"""Wu et al. (IEEE TMI 2020) view-wise multi-view CNN (see docs/models/wu.md)."""

from bilatcf.models import lazy_exports

__all__ = ["Wu"]
__getattr__ = lazy_exports(__name__, __all__)
