"""VA-GAN (Baumgartner et al., CVPR 2018): a map generator M with x + M(x) made to look normal by a WGAN-GP critic."""

from bilatcf.models import lazy_exports

__all__ = ["VAGAN"]
__getattr__ = lazy_exports(__name__, __all__)
