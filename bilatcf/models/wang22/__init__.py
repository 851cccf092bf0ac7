"""Wang et al. (MIDL 2022), approximated by DisAsymNet's AsyC alone (see docs/models/wang22.md)."""

from bilatcf.models import lazy_exports

__all__ = ["Wang22"]
__getattr__ = lazy_exports(__name__, __all__)
