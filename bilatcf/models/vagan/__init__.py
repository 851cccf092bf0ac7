"""VA-GAN (Baumgartner et al., CVPR 2018): a map generator M with x + M(x) made to look normal by a WGAN-GP critic."""

from bilatcf.models.vagan.module import VAGAN

__all__ = ["VAGAN"]
