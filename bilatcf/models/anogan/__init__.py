"""AnoGAN (Schlegl et al., IPMI 2017): a GAN of normal images, a latent search per image, the residual as the map."""

from bilatcf.models.anogan.module import AnoGAN

__all__ = ["AnoGAN"]
