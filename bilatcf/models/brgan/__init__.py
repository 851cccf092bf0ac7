"""BR-GAN (Wang et al., MICCAI 2020): a feature-level bilateral cycle with a residual-preserved module."""

from bilatcf.models.brgan.module import BRGAN

__all__ = ["BRGAN"]
