"""CGN: bilateral asymmetry guided counterfactual generating network (see docs/models/cgn.md)."""

from bilatcf.models import lazy_exports

__all__ = ["CGN"]
__getattr__ = lazy_exports(__name__, __all__)
