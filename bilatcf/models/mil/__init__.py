"""Deep multi-instance networks (Zhu et al., MICCAI 2017): max pooling, label assignment and sparse MIL."""

from bilatcf.models.mil.module import MIL

__all__ = ["MIL"]
