"""HAM, hierarchical attention mining (Ouyang et al., IEEE TMI 2020); see docs/models/ham.md."""

from bilatcf.models.ham.module import HAM

__all__ = ["HAM"]
