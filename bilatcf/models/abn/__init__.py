"""ABN: attention branch network (Fukui et al., CVPR 2019), single image (see docs/models/abn.md)."""

from bilatcf.models import lazy_exports

__all__ = ["ABN"]
__getattr__ = lazy_exports(__name__, __all__)
