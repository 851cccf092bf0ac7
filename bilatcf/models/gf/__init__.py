"""GF baseline (see docs/models/gf.md)."""

from bilatcf.models.gf.module import GF

__all__ = ["GF"]
