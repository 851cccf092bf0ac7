"""Wang et al. (MIDL 2022), approximated by DisAsymNet's AsyC alone (see docs/models/wang22.md)."""

from bilatcf.models.wang22.module import Wang22

__all__ = ["Wang22"]
