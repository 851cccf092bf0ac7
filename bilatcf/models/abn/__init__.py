"""ABN: attention branch network (Fukui et al., CVPR 2019), single image (see docs/models/abn.md)."""

from bilatcf.models.abn.module import ABN

__all__ = ["ABN"]
