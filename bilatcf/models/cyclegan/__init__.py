"""CycleGAN (Zhu et al., ICCV 2017) as a bilateral classification baseline: abnormal → normal image translation."""

from bilatcf.models.cyclegan.module import CycleGAN

__all__ = ["CycleGAN"]
