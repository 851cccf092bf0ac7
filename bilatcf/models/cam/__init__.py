"""CAM (Zhou et al. 2016) and Grad-CAM (Selvaraju et al. 2017) explanation maps of a plain single-image classifier."""

from bilatcf.models.cam.module import CAM

__all__ = ["CAM"]
