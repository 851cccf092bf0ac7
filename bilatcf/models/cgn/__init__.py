"""CGN: bilateral asymmetry guided counterfactual generating network (see docs/models/cgn.md)."""

from bilatcf.models.cgn.module import CGN

__all__ = ["CGN"]
