"""AnoGAN (Schlegl et al., IPMI 2017): a GAN of normal images, a latent search per image, the residual as the map."""

from bilatcf.models import lazy_exports

__all__ = ["AnoGAN"]
__getattr__ = lazy_exports(__name__, __all__)
