"""Vanilla baseline (see docs/models/vanilla.md)."""

from bilatcf.models import lazy_exports

__all__ = ["Vanilla"]
__getattr__ = lazy_exports(__name__, __all__)
