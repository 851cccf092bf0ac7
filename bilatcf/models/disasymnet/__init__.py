"""DisAsymNet: asymmetric transformer classifier, normal/abnormal disentangling decoder, self-adversarial learning and
tumour synthesis (see docs/models/disasymnet.md)."""

from bilatcf.models import lazy_exports

__all__ = ["DisAsymNet"]
__getattr__ = lazy_exports(__name__, __all__)
