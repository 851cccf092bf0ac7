"""The template a new method starts from: a minimal two-optimizer GAN (see ``docs/architecture.md``)."""

from bilatcf.models._template.module import Template

__all__ = ["Template"]
