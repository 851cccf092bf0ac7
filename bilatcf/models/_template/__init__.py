"""The template a new method starts from: a minimal two-optimizer GAN (see ``docs/architecture.md``)."""

from bilatcf.models import lazy_exports

__all__ = ["Template"]
__getattr__ = lazy_exports(__name__, __all__)
