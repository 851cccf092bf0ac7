"""CX-GAN (Zia, Nisar & Murtaza): counterfactual explanation maps from cycle-consistent GANs, integrated or cascaded."""

from bilatcf.models import lazy_exports

__all__ = ["CXGAN"]
__getattr__ = lazy_exports(__name__, __all__)
