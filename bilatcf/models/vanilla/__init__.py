"""Vanilla baseline (see docs/models/vanilla.md)."""

from bilatcf.models.vanilla.module import Vanilla

__all__ = ["Vanilla"]
