"""CVT, cross-view transformer (van Tulder et al., MICCAI 2021; see docs/models/cvt.md)."""

from bilatcf.models.cvt.module import CVT

__all__ = ["CVT"]
