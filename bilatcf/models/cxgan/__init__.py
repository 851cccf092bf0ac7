"""CX-GAN (Zia, Nisar & Murtaza): counterfactual explanation maps from cycle-consistent GANs, integrated or cascaded."""

from bilatcf.models.cxgan.module import CXGAN

__all__ = ["CXGAN"]
