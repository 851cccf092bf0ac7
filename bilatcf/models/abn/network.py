"""Attention branch network (Fukui et al., CVPR 2019), single image, pure PyTorch.

The backbone runs in two halves (``Backbone.forward_trunk`` / ``forward_last``). Between them sits the attention
branch; the perception branch is the backbone's own last stage on the re-weighted trunk features:

* trunk: g = trunk(x), the penultimate stage's map [B, C_g, h, w];
* attention branch: A = ReLU(BN(conv1×1_{→K}(BN(stage′(g))))), with stage′ a stride-1 copy of the last stage (own
  weights); (i) attention logits a = GAP(conv1×1_{K→K}(A)); (ii) attention map M = σ(BN(conv_{K→1}(A))) [B, 1, h, w];
* perception branch: g′ = g·M + g, perception logits z = FC(GAP(last_stage(g′)));
* loss: CE(a, y) + CE(z, y) (:func:`abn_loss`); the test reads z.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from timm.layers import Conv2dSame
from torch import Tensor, nn

from bilatcf.errors import ConfigError
from bilatcf.nn.backbones import Backbone, create_backbone

#: Which map is the ``cam``: the class-agnostic attention map M, or the attention branch's map of the predicted class.
MapKind = Literal["attention", "class"]
#: Classes of the binary tasks (normal/abnormal, benign/malignant): the K of the paper.
NUM_CLASSES = 2


class ABNParts(NamedTuple):
    """Everything one pass computes (K = 2 classes)."""

    perception_logits: Tensor  # [B, K] z, what the test reads
    attention_logits: Tensor  # [B, K] a = GAP of class_maps
    attention_map: Tensor  # [B, 1, h, w] M ∈ (0, 1), at the trunk's resolution
    class_maps: Tensor  # [B, K, h, w] conv1×1_{K→K}(A): channel k's spatial mean is a_k
    features: Tensor  # [B, C, h', w'] the perception branch's last-stage map


def stride_one(stage: nn.Module) -> nn.Module:
    """Make a copy of a backbone's last stage keep its input's resolution: every strided conv and pool → stride 1.

    A strided conv keeps its kernel and dilation and gets stride 1; if its padding does not keep the size at stride 1
    (an even kernel: ConvNeXt's 2×2 patch conv) it is zero-padded first, more on the bottom/right as timm's "same"
    convs do. A strided pool whose window does not keep the size at stride 1 (the 2×2 average of ResNet-D's shortcut)
    becomes an identity, which is what timm builds for the shortcut of a stride-1 block; other pools get stride 1.
    Modules already at stride 1 (a dilated last stage, ``output_stride=16``) are left as they are. Works in place and
    returns ``stage``.
    """
    for parent in list(stage.modules()):
        for name, child in list(parent.named_children()):
            replacement = _at_stride_one(child)
            if replacement is not child:
                setattr(parent, name, replacement)
    return stage


def _at_stride_one(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.Conv2d) and _pair(module.stride) != (1, 1):
        module.stride = (1, 1)
        if isinstance(module, Conv2dSame):  # pads itself to keep the size at any stride
            return module
        padding = (0, 0) if module.padding == "valid" else module.padding
        total = [d * (k - 1) for k, d in zip(module.kernel_size, module.dilation, strict=True)]
        if all(2 * p == t for p, t in zip(padding, total, strict=True)):
            return module
        module.padding = (0, 0)
        top, left = total[0] // 2, total[1] // 2
        return nn.Sequential(nn.ZeroPad2d((left, total[1] - left, top, total[0] - top)), module)
    if isinstance(module, nn.AvgPool2d | nn.MaxPool2d) and _pair(module.stride) != (1, 1):
        kernel, padding = _pair(module.kernel_size), _pair(module.padding)
        if all(2 * p == k - 1 for k, p in zip(kernel, padding, strict=True)):
            module.stride = (1, 1)
            return module
        return nn.Identity()
    return module


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class AttentionBranch(nn.Module):
    """stage′ → BN → conv1×1 to K → BN → ReLU = A; (i) conv1×1 K→K (+ GAP: attention logits); (ii) conv K→1 → BN → σ.

    Args:
        stage: a stride-1 copy of the backbone's last stage with its own weights (see :func:`stride_one`).
        channels: output channels of ``stage``.
        map_kernel: kernel of the K→1 conv making M (3: the authors' code; 1: the paper's figure).
    """

    def __init__(self, stage: nn.Module, channels: int, map_kernel: int = 3) -> None:
        super().__init__()
        self.stage = stage
        self.norm = nn.BatchNorm2d(channels)
        self.to_classes = nn.Sequential(
            nn.Conv2d(channels, NUM_CLASSES, 1, bias=False), nn.BatchNorm2d(NUM_CLASSES), nn.ReLU(inplace=True)
        )
        self.classifier = nn.Conv2d(NUM_CLASSES, NUM_CLASSES, 1)
        self.to_map = nn.Sequential(
            nn.Conv2d(NUM_CLASSES, 1, map_kernel, padding=map_kernel // 2, bias=False), nn.BatchNorm2d(1)
        )

    def forward(self, trunk: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """g [B, C_g, h, w] → (attention logits [B, K], class maps [B, K, h, w], M [B, 1, h, w])."""
        features = self.stage(trunk)
        if features.shape[-2:] != trunk.shape[-2:]:
            raise ConfigError(
                f"abn: the attention branch maps the trunk's {tuple(trunk.shape[-2:])} map to "
                f"{tuple(features.shape[-2:])}; its copy of the last stage still downsamples. Use a ResNet-like "
                "timm backbone (resnet18, resnet50, convnext_atto, ...) or tv_alexnet."
            )
        responses = self.to_classes(self.norm(features))  # A: the K×h×w class responses
        class_maps = self.classifier(responses)
        attention_map = torch.sigmoid(self.to_map(responses))
        return class_maps.mean(dim=(2, 3)), class_maps, attention_map


class AttentionBranchNetwork(nn.Module):
    """Trunk → attention branch → perception branch (the backbone's last stage on g·M + g) → GAP → FC to K classes.

    Args:
        backbone: the backbone (trunk and last stage of the perception branch).
        attention_stage: the attention branch's stride-1 copy of ``backbone``'s last stage, with its own weights.
        map_kernel: kernel of the conv making the attention map M (odd).
    """

    def __init__(self, backbone: Backbone, attention_stage: nn.Module, map_kernel: int = 3) -> None:
        super().__init__()
        if any(a is b for a in attention_stage.parameters() for b in backbone.parameters()):
            raise ConfigError("abn: the attention branch must have its own weights, not the backbone's last stage's.")
        self.backbone = backbone
        self.attention = AttentionBranch(attention_stage, backbone.out_channels, map_kernel)
        self.fc = nn.Linear(backbone.out_channels, NUM_CLASSES)

    def perceive(self, trunk: Tensor, attention_map: Tensor) -> tuple[Tensor, Tensor]:
        """Perception branch: g′ = g·M + g → last stage → GAP → FC; returns (logits [B, K], last-stage map)."""
        features = self.backbone.forward_last(trunk * attention_map + trunk)
        return self.fc(features.mean(dim=(2, 3))), features

    def forward(self, images: Tensor) -> ABNParts:
        trunk = self.backbone.forward_trunk(images)
        attention_logits, class_maps, attention_map = self.attention(trunk)
        perception_logits, features = self.perceive(trunk, attention_map)
        return ABNParts(perception_logits, attention_logits, attention_map, class_maps, features)


def binary_logit(class_logits: Tensor) -> Tensor:
    """[B, 2] class logits (z0, z1) → [B] the logit z1 − z0, whose sigmoid is the softmax probability of class 1."""
    return class_logits[:, 1] - class_logits[:, 0]


def two_class_cross_entropy(logit: Tensor, labels: Tensor) -> Tensor:
    """CE over the two classes (0, z1 − z0) on pairs with a known label (−1 ignored); softmax is shift-invariant, so
    it equals CE over (z0, z1)."""
    known = labels >= 0
    if not known.any():
        return logit.sum() * 0.0
    classes = torch.stack([torch.zeros_like(logit[known]), logit[known]], dim=1)
    return F.cross_entropy(classes, labels[known].long())


def abn_loss(attention_logit: Tensor, perception_logit: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """ABN's loss terms, equally weighted (their sum is the loss): CE of the attention and the perception branch."""
    return {
        "attention": two_class_cross_entropy(attention_logit, labels),
        "perception": two_class_cross_entropy(perception_logit, labels),
    }


def predicted_class_map(parts: ABNParts) -> Tensor:
    """The attention branch's map of the class the perception branch predicts → [B, 1, h, w]."""
    predicted = (binary_logit(parts.perception_logits) >= 0).long()
    index = torch.arange(predicted.shape[0], device=predicted.device)
    return parts.class_maps[index, predicted].unsqueeze(1)


def attention_stage(backbone: str, output_stride: int | None) -> nn.Module:
    """The attention branch's copy of ``backbone``'s last stage: the same blocks, at stride 1, with new weights.

    The copy comes from a newly built backbone of the same name (never from a weights file), so its weights are
    initialised as that family initialises a new network (timm's zero-initialised last norm of each residual block,
    ConvNeXt's layer scale), which resetting a deep copy module by module would not do for every family; the backbone's
    own last stage is left untouched and shares nothing with it.
    """
    fresh = create_backbone(backbone, in_chans=1, weights=None, output_stride=output_stride)
    return stride_one(fresh.last_stage)
