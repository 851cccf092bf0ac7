"""DisAsymNet: asymmetric transformer classifier, normal/abnormal disentangling decoder, self-adversarial learning and
tumour synthesis (see docs/models/disasymnet.md)."""

from bilatcf.models.disasymnet.module import DisAsymNet

__all__ = ["DisAsymNet"]
