"""Wu et al. (IEEE TMI 2020) view-wise multi-view CNN, pure PyTorch: the paper's ResNet-22, one view's branch, the
Grad-CAM of its target, and the average of the CC and MLO predictions.

A branch sees the two breasts of one view (bilatcf's target and its contralateral reference, which the data pipeline
has already mirrored to face the same way): one backbone shared by both sides → global average pooling →
concat[target, reference] → FC 512 + ReLU → one logit per side. The FC after the concatenation mixes the two sides, so
no linear head pools the target's feature map and a plain CAM is undefined: the map is Grad-CAM (Selvaraju et al. 2017).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bilatcf.errors import ConfigError
from bilatcf.nn.backbones import Backbone, create_backbone
from bilatcf.nn.cam import grad_cam

#: The paper's backbone, built here rather than by the shared factory (no timm model has its shape).
WU_RESNET22 = "wu_resnet22"
#: ResNet-22: the widths of its 5 stages (16 → 256, doubling) and their strides (the first keeps the stem's size).
STAGE_WIDTHS = (16, 32, 64, 128, 256)
STAGE_STRIDES = (1, 2, 2, 2, 2)
BLOCKS_PER_STAGE = 2
#: The stem (7×7 stride-2 conv, 3×3 stride-2 max-pool) reduces by 4, the stages by 16: 64 in all.
NATIVE_STRIDE = 64
OUTPUT_STRIDES = (8, 16, 32, 64)


class PreActBlock(nn.Module):
    """A pre-activation basic block (He et al., ECCV 2016): BN → ReLU → 3×3 conv → BN → ReLU → 3×3 conv, plus a
    shortcut that is the identity, or a 1×1 conv of the pre-activated input where the width or the stride changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.norm2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False)
        changes = stride != 1 or in_channels != out_channels
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False) if changes else None

    def forward(self, x: Tensor) -> Tensor:
        activated = F.relu(self.norm1(x))
        shortcut = x if self.shortcut is None else self.shortcut(activated)
        return self.conv2(F.relu(self.norm2(self.conv1(activated)))) + shortcut


class WuResNet22(nn.Module):
    """Wu et al.'s ResNet-22: 7×7 stride-2 conv (16 filters) → 3×3 stride-2 max-pool → 5 stages of 2 pre-activation
    blocks (16, 32, 64, 128, 256 channels; stride 2 from the second stage on) → BN → ReLU.

    1 + 5·2·2 = 21 convolutions on the main path, plus the classifier: the 22 layers of the name.

    Args:
        in_chans: input channels (1 for mammograms).
        output_stride: 64 (None: the paper's network) or 8, 16, 32, reached by dilating the last stages instead of
            striding them (as timm does for its ResNets), for finer Grad-CAM maps.
    """

    def __init__(self, in_chans: int = 1, output_stride: int | None = None) -> None:
        super().__init__()
        output_stride = NATIVE_STRIDE if output_stride is None else output_stride
        if output_stride not in OUTPUT_STRIDES:
            raise ConfigError(
                f"backbone {WU_RESNET22!r} supports output_stride {', '.join(map(str, OUTPUT_STRIDES))} or null "
                f"(64, the paper's network); got {output_stride}."
            )
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, STAGE_WIDTHS[0], 7, stride=2, padding=3, bias=False), nn.MaxPool2d(3, 2, padding=1)
        )
        stages, channels, stride, dilation = [], STAGE_WIDTHS[0], 4, 1
        for width, stage_stride in zip(STAGE_WIDTHS, STAGE_STRIDES, strict=True):
            if stride * stage_stride > output_stride:
                dilation, stage_stride = dilation * stage_stride, 1
            stride *= stage_stride
            blocks = [PreActBlock(channels, width, stage_stride, dilation)]
            blocks += [PreActBlock(width, width, 1, dilation) for _ in range(BLOCKS_PER_STAGE - 1)]
            stages.append(nn.Sequential(*blocks))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.final = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU())  # pre-activation nets end on BN + ReLU
        self.out_channels, self.stride = channels, stride

    def forward(self, x: Tensor) -> Tensor:
        return self.final(self.stages(self.stem(x)))


def build_backbone(name: str, weights: str | None, output_stride: int | None) -> Backbone:
    """``wu_resnet22`` (built here) or any backbone of the shared factory, for one-channel images."""
    if name != WU_RESNET22:
        return create_backbone(name, in_chans=1, weights=weights, output_stride=output_stride)
    if weights is not None:
        raise ConfigError(
            f"backbone {WU_RESNET22!r} trains from scratch in bilatcf (weights must be null; got {weights!r}). "
            "To start from a previous run, resume or load its checkpoint."
        )
    network = WuResNet22(in_chans=1, output_stride=output_stride)
    return Backbone(network, WU_RESNET22, out_channels=network.out_channels, stride=network.stride)


def standardize(images: Tensor, eps: float = 1e-6) -> Tensor:
    """Per-image standardisation (Wu et al.'s preprocessing): zero mean, unit standard deviation over each image."""
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    std = images.std(dim=(1, 2, 3), keepdim=True)
    return (images - mean) / (std + eps)


class ViewWiseBranch(nn.Module):
    """One view's model: backbone on both sides → GAP → concat[target, reference] → FC + ReLU → per-side logits.

    Args:
        backbone: the feature extractor, shared by the two sides of the view.
        hidden: width of the FC layer after the concatenation (512 in the paper).
    """

    def __init__(self, backbone: Backbone, hidden: int = 512) -> None:
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Sequential(nn.Linear(2 * backbone.out_channels, hidden), nn.ReLU())
        self.side_logits = nn.Linear(hidden, 2)  # column 0: the target's logit, column 1: the reference's

    def classify(self, target_pooled: Tensor, reference_pooled: Tensor) -> Tensor:
        """[B, 2] logits (target, reference) of the pooled features, concatenated in the order [target, reference]."""
        return self.side_logits(self.fc(torch.cat([target_pooled, reference_pooled], dim=1)))

    def forward(self, target: Tensor, reference: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(target logit [B], reference logit [B], target features [B, C, h, w], target Grad-CAM [B, h, w])."""
        target_features, reference_features = self.backbone(torch.cat([target, reference])).chunk(2)
        logits = self.classify(target_features.mean(dim=(2, 3)), reference_features.mean(dim=(2, 3)))
        cam = target_grad_cam(self, target_features, reference_features)
        return logits[:, 0], logits[:, 1], target_features, cam


def target_grad_cam(branch: ViewWiseBranch, target_features: Tensor, reference_features: Tensor) -> Tensor:
    """Grad-CAM of the target's predicted class on the target's feature map → [B, h, w] (detached).

    The score is the target logit z for a predicted positive, −z for a predicted negative (the class-0 logit of a
    single-logit binary head, up to a constant), as bilatcf's ``cam`` is the map of the predicted class. It is
    differentiated with respect to a copy of the target's features made outside inference mode, with the reference's
    pooled features held fixed, so it works in training, under ``torch.no_grad`` and under Lightning's
    ``torch.inference_mode``, builds only the FC layers' small graph and never touches the parameters' gradients.
    """
    with torch.inference_mode(False), torch.enable_grad():
        leaf = target_features.detach().clone().requires_grad_(True)
        reference_pooled = reference_features.detach().mean(dim=(2, 3)).clone()
        logit = branch.classify(leaf.mean(dim=(2, 3)), reference_pooled)[:, 0]
        sign = torch.where(logit.detach() >= 0, 1.0, -1.0).to(logit.dtype)
        return grad_cam(leaf, logit * sign)


def average_views(logits: Tensor, available: Tensor) -> Tensor:
    """The logit of the mean probability over the available views: [V, B] logits, [V, B] bool → [B].

    logit(mean_v σ(z_v)) = log Σ_v σ(z_v) − log Σ_v σ(−z_v) (the 1/n cancels), computed with log-sum-exp so that it
    stays finite for large logits; with one available view it is that view's logit. Every pair needs one.
    """
    missing = torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device)
    positive = torch.where(available, F.logsigmoid(logits), missing).logsumexp(dim=0)
    negative = torch.where(available, F.logsigmoid(-logits), missing).logsumexp(dim=0)
    return positive - negative
