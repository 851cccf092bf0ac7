"""Late fusion's network is DisAsymNet's AsyC without the asymmetric transformer (``transformer_depth=None``): one
encoder shared by both sides, global average pooling, a per-side abnormal head with its CAM, and an asymmetry head on
the concatenated pooled features of the two sides."""

from bilatcf.models.disasymnet.network import AsyC as LateFusionNetwork

__all__ = ["LateFusionNetwork"]
