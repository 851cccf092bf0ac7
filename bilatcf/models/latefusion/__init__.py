"""Late fusion: DisAsymNet's classifier without its asymmetric transformer (see docs/models/latefusion.md)."""

from bilatcf.models.latefusion.module import LateFusion

__all__ = ["LateFusion"]
