"""Wu et al. (IEEE TMI 2020) view-wise multi-view CNN (see docs/models/wu.md)."""

from bilatcf.models.wu.module import Wu

__all__ = ["Wu"]
