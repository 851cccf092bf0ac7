"""Image-level early fusion (see docs/models/early.md)."""

from bilatcf.models.early.module import EarlyFusion

__all__ = ["EarlyFusion"]
