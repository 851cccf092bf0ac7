"""SBF baseline (see docs/models/sbf.md)."""

from bilatcf.models.sbf.module import SBF

__all__ = ["SBF"]
