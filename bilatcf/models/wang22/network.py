"""wang22's network is DisAsymNet's AsyC (shared encoder, asymmetric transformer of self- and cross-attention blocks,
per-side abnormal head with its CAM, asymmetry head on |f_out^r − f_out^l|): the closest published description of
Wang et al. (MIDL 2022), whose text could not be found."""

from bilatcf.models.disasymnet.network import AsyC as Wang22Network

__all__ = ["Wang22Network"]
