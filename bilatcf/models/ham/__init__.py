"""HAM, hierarchical attention mining (Ouyang et al., IEEE TMI 2020); see docs/models/ham.md."""

from bilatcf.models import lazy_exports

__all__ = ["HAM"]
__getattr__ = lazy_exports(__name__, __all__)
