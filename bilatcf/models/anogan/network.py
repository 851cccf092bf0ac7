"""AnoGAN's networks and losses, pure PyTorch: a DCGAN generator and discriminator, and the latent-mapping loss.

The generator maps a latent code z to an image of a fixed size (a DCGAN cannot follow the input size the way a fully
convolutional network does): z is projected to an (H / 2^depth) × (W / 2^depth) map and up-sampled ``depth`` times
by stride-2 transposed convolutions. The discriminator mirrors it; its last hidden map is the feature layer f(·) of
AnoGAN's discrimination loss. Images are in [−1, 1] (tanh), as in DCGAN; the module maps bilatcf's [0, 1] images
there. f-AnoGAN (``bilatcf.models.fanogan``) reuses these networks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from bilatcf.errors import ConfigError
from bilatcf.nn.blocks import GAN_INIT_GAIN, Norm, init_weights, norm_layer

_LEAK = 0.2  # LeakyReLU slope of the DCGAN discriminator


def bottom_size(image_size: Sequence[int], depth: int, model: str = "anogan") -> tuple[int, int]:
    """(H / 2^depth, W / 2^depth): the map size after ``depth`` stride-2 steps; a ConfigError if it is not whole."""
    height, width = (int(s) for s in image_size)
    factor = 2**depth
    if height % factor or width % factor:
        raise ConfigError(
            f"{model}: model.image_size={[height, width]} is not divisible by 2^depth = {factor} "
            f"(model.depth={depth}); choose an image size that is a multiple of {factor} or a smaller depth."
        )
    return height // factor, width // factor


class DCGANGenerator(nn.Module):
    """z → image in [−1, 1] (Radford et al. 2016): linear projection to an (H/2^d)×(W/2^d) map of base·2^(d−1)
    channels, then d stride-2 4×4 transposed convs that halve the width, batch norm + ReLU between, tanh at the end.

    Args:
        latent_dim: size of z.
        image_size: (H, W) of the generated images, each divisible by 2^depth.
        base: channels before the last transposed conv (DCGAN: 128 at 64 px with depth 4; 64 here).
        depth: stride-2 up-sampling steps.
    """

    def __init__(self, latent_dim: int, image_size: Sequence[int], base: int = 64, depth: int = 4) -> None:
        super().__init__()
        self.height, self.width = bottom_size(image_size, depth)
        self.widths = [base * 2 ** (depth - 1 - level) for level in range(depth)]
        # No biases before batch norm: the normalisation cancels them.
        self.project = nn.Linear(latent_dim, self.widths[0] * self.height * self.width, bias=False)
        layers: list[nn.Module] = [norm_layer("batch", self.widths[0]), nn.ReLU(inplace=True)]
        for level in range(depth - 1):
            layers += [
                nn.ConvTranspose2d(self.widths[level], self.widths[level + 1], 4, stride=2, padding=1, bias=False),
                norm_layer("batch", self.widths[level + 1]),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(self.widths[-1], 1, 4, stride=2, padding=1), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        init_weights(self, "normal", GAN_INIT_GAIN)

    def forward(self, z: Tensor) -> Tensor:
        """Images [B, 1, H, W] in [−1, 1] from codes z [B, latent_dim]."""
        return self.body(self.project(z).view(-1, self.widths[0], self.height, self.width))


def conv_body(base: int, depth: int, norm: Norm) -> nn.Sequential:
    """DCGAN's discriminator body: ``depth`` stride-2 4×4 convs doubling the width (base, 2·base, …), LeakyReLU 0.2,
    ``norm`` after every conv but the first (DCGAN: batch; a WGAN-GP critic or f-AnoGAN's encoder: none)."""
    layers: list[nn.Module] = [nn.Conv2d(1, base, 4, stride=2, padding=1), nn.LeakyReLU(_LEAK, inplace=True)]
    for level in range(1, depth):
        width = base * 2**level
        layers += [
            nn.Conv2d(width // 2, width, 4, stride=2, padding=1, bias=norm == "none"),
            norm_layer(norm, width),
            nn.LeakyReLU(_LEAK, inplace=True),
        ]
    return nn.Sequential(*layers)


class DCGANDiscriminator(nn.Module):
    """Image → one score per image: :func:`conv_body`, flatten, linear. ``features`` is the body's output, the last
    hidden layer (AnoGAN's and f-AnoGAN's f(·)).

    Args:
        image_size: (H, W) of the input images, each divisible by 2^depth (the linear layer reads the flat map).
        base: channels of the first conv.
        depth: stride-2 convs.
        norm: ``batch`` (DCGAN, AnoGAN) or ``none`` (a WGAN-GP critic: the per-sample gradient penalty is wrong when
            samples interact through batch statistics).
        head_bias: a bias on the output (a BCE discriminator); a Wasserstein critic has none, since a constant offset
            cancels in its loss and the bias's gradient is exactly 0.
    """

    def __init__(
        self, image_size: Sequence[int], base: int = 64, depth: int = 4, norm: Norm = "batch", head_bias: bool = True
    ) -> None:
        super().__init__()
        height, width = bottom_size(image_size, depth)
        self.body = conv_body(base, depth, norm)
        self.head = nn.Linear(base * 2 ** (depth - 1) * height * width, 1, bias=head_bias)
        init_weights(self, "normal", GAN_INIT_GAIN)

    def features(self, images: Tensor) -> Tensor:
        """f(x): the last hidden feature map [B, C, H/2^d, W/2^d]."""
        return self.body(images)

    def forward(self, images: Tensor) -> Tensor:
        """One score (a logit, or a critic value) per image [B]."""
        return self.head(self.body(images).flatten(1))[:, 0]


def mapping_loss(
    images: Tensor, generated: Tensor, image_features: Tensor, generated_features: Tensor, weight: float
) -> Tensor:
    """AnoGAN's mapping loss per image [B] (Schlegl et al. 2017): L = (1 − λ)·L_R + λ·L_D with the residual loss
    L_R = Σ|x − G(z)| and the discrimination loss L_D = Σ|f(x) − f(G(z))|, both sums over all elements of an image,
    in float32. At the end of the search it is the anomaly score A(x) = (1 − λ)·R(x) + λ·D(x)."""
    residual = (images.float() - generated.float()).abs().flatten(1).sum(dim=1)
    discrimination = (image_features.float() - generated_features.float()).abs().flatten(1).sum(dim=1)
    return (1 - weight) * residual + weight * discrimination


class AnoGANNetwork(nn.Module):
    """Generator G and discriminator D of AnoGAN's DCGAN.

    Args:
        latent_dim: size of z.
        image_size: (H, W) of the images.
        generator_channels: base width of G.
        discriminator_channels: base width of D.
        depth: stride-2 layers of G and of D.
    """

    def __init__(
        self,
        latent_dim: int,
        image_size: Sequence[int],
        generator_channels: int,
        discriminator_channels: int,
        depth: int,
    ) -> None:
        super().__init__()
        self.generator = DCGANGenerator(latent_dim, image_size, generator_channels, depth)
        self.discriminator = DCGANDiscriminator(image_size, discriminator_channels, depth, norm="batch")

    def search(self, images: Tensor, initial: Tensor, steps: int, lr: float, weight: float) -> Tensor:
        """AnoGAN's mapping of an image to the latent space: z_0 = ``initial``, then ``steps`` Adam steps on the mapping
        loss of each image; returns z_Γ [B, latent_dim] (detached).

        The loss of the batch is the sum of the per-image losses, and Adam is element-wise, so each image's search is
        independent of the others in the batch (the networks must be in eval mode: no batch statistics). Only z gets
        gradients (``autograd.grad``), so the networks' ``.grad`` fields are left untouched.
        """
        features = self.discriminator.features(images).detach()
        with torch.enable_grad():
            z = initial.detach().clone().requires_grad_(True)
            optimizer = torch.optim.Adam([z], lr=lr)
            for _ in range(steps):
                generated = self.generator(z)
                loss = mapping_loss(images, generated, features, self.discriminator.features(generated), weight)
                (z.grad,) = torch.autograd.grad(loss.sum(), [z])
                optimizer.step()
        return z.detach()
