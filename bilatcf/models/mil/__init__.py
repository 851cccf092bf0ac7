"""Deep multi-instance networks (Zhu et al., MICCAI 2017): max pooling, label assignment and sparse MIL."""

from bilatcf.models import lazy_exports

__all__ = ["MIL"]
__getattr__ = lazy_exports(__name__, __all__)
