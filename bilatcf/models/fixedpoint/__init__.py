"""Fixed-Point GAN (Siddiquee et al., ICCV 2019) as a bilateral classification baseline: translation to normal."""

from bilatcf.models.fixedpoint.module import FixedPointGAN

__all__ = ["FixedPointGAN"]
