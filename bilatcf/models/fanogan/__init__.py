"""f-AnoGAN (Schlegl et al., Medical Image Analysis 2019): a WGAN-GP of normal images, then an encoder to score."""

from bilatcf.models.fanogan.module import FAnoGAN

__all__ = ["FAnoGAN"]
