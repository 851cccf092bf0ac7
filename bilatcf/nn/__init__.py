"""Pure-PyTorch building blocks shared by every method: backbones, generator/discriminator blocks, losses, CAMs and the
history pool. Nothing here imports Lightning."""

from bilatcf.nn.backbones import Backbone, create_backbone
from bilatcf.nn.blocks import (
    GAN_INIT_GAIN,
    ConvNormAct,
    FeatureDiscriminator,
    PatchDiscriminator,
    ResBlock,
    ResnetGenerator,
    UNet,
    WGANCritic,
    adain,
    init_weights,
    norm_layer,
    set_requires_grad,
)
from bilatcf.nn.cam import class_activation_map, grad_cam, normalize_map, spatial_softmax
from bilatcf.nn.losses import (
    chamfer_distance,
    cycle_loss,
    feature_map_points,
    gan_loss,
    gradient_penalty,
    negative_embedding_loss,
    triplet_hinge,
    weighted_feature_distance,
)
from bilatcf.nn.pool import HistoryPool

__all__ = [
    "GAN_INIT_GAIN",
    "Backbone",
    "ConvNormAct",
    "FeatureDiscriminator",
    "HistoryPool",
    "PatchDiscriminator",
    "ResBlock",
    "ResnetGenerator",
    "UNet",
    "WGANCritic",
    "adain",
    "chamfer_distance",
    "class_activation_map",
    "create_backbone",
    "cycle_loss",
    "feature_map_points",
    "gan_loss",
    "grad_cam",
    "gradient_penalty",
    "init_weights",
    "negative_embedding_loss",
    "norm_layer",
    "normalize_map",
    "set_requires_grad",
    "spatial_softmax",
    "triplet_hinge",
    "weighted_feature_distance",
]
