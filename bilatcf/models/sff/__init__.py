"""SFF baseline (see docs/models/sff.md)."""

from bilatcf.models.sff.module import SFF

__all__ = ["SFF"]
