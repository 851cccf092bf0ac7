"""f-AnoGAN (Schlegl et al., Medical Image Analysis 2019): a WGAN-GP of normal images, then an encoder to score."""

from bilatcf.models import lazy_exports

__all__ = ["FAnoGAN"]
__getattr__ = lazy_exports(__name__, __all__)
