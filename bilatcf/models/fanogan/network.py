"""f-AnoGAN's networks and loss, pure PyTorch: AnoGAN's DCGAN generator, a critic without batch norm, the izif encoder.

Phase 1 trains the generator G and the critic D as a WGAN-GP on normal images; phase 2 trains the encoder E with G and
D frozen so that G(E(x)) reconstructs x, in image space and in D's feature space (the izi_f architecture). A single
pass x → E → G then replaces AnoGAN's iterative latent search. Images are in [−1, 1] (G ends in a tanh).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from bilatcf.models.anogan.network import DCGANDiscriminator, DCGANGenerator, bottom_size, conv_body
from bilatcf.nn.blocks import GAN_INIT_GAIN, init_weights


class IzifEncoder(nn.Module):
    """x → z ∈ [−1, 1]^d: the critic's conv body (no normalisation), flatten, linear, tanh.

    Args:
        latent_dim: size of z.
        image_size: (H, W) of the input images, each divisible by 2^depth.
        base: channels of the first conv.
        depth: stride-2 convs.
    """

    def __init__(self, latent_dim: int, image_size: Sequence[int], base: int = 64, depth: int = 4) -> None:
        super().__init__()
        height, width = bottom_size(image_size, depth)
        self.body = conv_body(base, depth, "none")
        self.head = nn.Linear(base * 2 ** (depth - 1) * height * width, latent_dim)
        init_weights(self, "normal", GAN_INIT_GAIN)

    def forward(self, images: Tensor) -> Tensor:
        """Codes [B, latent_dim] in [−1, 1]."""
        return torch.tanh(self.head(self.body(images).flatten(1)))


def izif_loss(
    images: Tensor, reconstruction: Tensor, image_features: Tensor, reconstruction_features: Tensor, kappa: float
) -> Tensor:
    """The izi_f loss per image [B] (Schlegl et al. 2019): (1/n)·‖x − G(E(x))‖² + κ·(1/n_d)·‖f(x) − f(G(E(x)))‖²,
    n pixels and n_d feature elements per image, i.e. two per-image MSEs, in float32. It trains the encoder and is the
    anomaly score A(x) = A_R(x) + κ·A_D(x)."""
    residual = (images.float() - reconstruction.float()).pow(2).flatten(1).mean(dim=1)
    features = (image_features.float() - reconstruction_features.float()).pow(2).flatten(1).mean(dim=1)
    return residual + kappa * features


class FAnoGANNetwork(nn.Module):
    """Generator G, critic D (its last hidden layer is f) and encoder E.

    Args:
        latent_dim: size of z.
        image_size: (H, W) of the images.
        generator_channels: base width of G.
        critic_channels: base width of D.
        encoder_channels: base width of E.
        depth: stride-2 layers of G, D and E.
    """

    def __init__(
        self,
        latent_dim: int,
        image_size: Sequence[int],
        generator_channels: int,
        critic_channels: int,
        encoder_channels: int,
        depth: int,
    ) -> None:
        super().__init__()
        self.generator = DCGANGenerator(latent_dim, image_size, generator_channels, depth)
        self.critic = DCGANDiscriminator(image_size, critic_channels, depth, norm="none", head_bias=False)
        self.encoder = IzifEncoder(latent_dim, image_size, encoder_channels, depth)

    def reconstruct(self, images: Tensor, kappa: float) -> tuple[Tensor, Tensor]:
        """(G(E(x)), the izi_f loss per image [B]) for images x in [−1, 1]."""
        reconstruction = self.generator(self.encoder(images))
        features = self.critic.features
        return reconstruction, izif_loss(images, reconstruction, features(images), features(reconstruction), kappa)
