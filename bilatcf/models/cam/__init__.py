"""CAM (Zhou et al. 2016) and Grad-CAM (Selvaraju et al. 2017) explanation maps of a plain single-image classifier."""

from bilatcf.models import lazy_exports

__all__ = ["CAM"]
__getattr__ = lazy_exports(__name__, __all__)
