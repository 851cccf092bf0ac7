"""Feature-map backbones: any timm model, plus torchvision's AlexNet (a backbone of the CGN and BR-GAN papers).

Every bilateral method takes the features of the **last convolutional layer** of one backbone shared by both breasts,
so a backbone here is only a feature extractor: ``[B, in_chans, H, W] -> [B, out_channels, ~H/stride, ~W/stride]``.

Nothing is ever downloaded (hospital clusters are usually offline, and so are our CI machines): ``weights`` must be a
local file. Two layouts are accepted: the full architecture's own state dict (a timm or torchvision checkpoint,
classifier included) and the state dict of a :class:`Backbone` (what a bilatcf run saves).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path

import timm
import torch
import torchvision
from torch import Tensor, nn

from bilatcf.errors import ConfigError, MissingDependencyError

ALEXNET = "tv_alexnet"
_DOWNLOAD_WEIGHTS = {"imagenet", "pretrained", "hub", "true"}
_PREFIXES = ("module.", "model.", "backbone.", "_orig_mod.")  # DDP, Lightning/timm wrappers, torch.compile
_TORCH_SUFFIXES = {".pth", ".pt", ".bin", ".ckpt"}
_SHOWN_KEYS = 5
_ALEXNET_LAST_STAGE = 10  # features[10] is conv5: the trunk ends with conv4 and its ReLU (256 channels)


class Backbone(nn.Module):
    """A feature extractor returning the last convolutional feature map.

    Attributes:
        out_channels: channels of the returned map.
        stride: nominal reduction from input to feature map (AlexNet's unpadded poolings floor it slightly lower).
        name: the name it was created from (a timm model name or ``tv_alexnet``).
    """

    def __init__(self, model: nn.Module, name: str, out_channels: int, stride: int) -> None:
        super().__init__()
        self.model = model
        self.name = name
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        features = self.model(x)
        return features[-1] if isinstance(features, list | tuple) else features

    # ------------------------------------------------------------------ the backbone in two halves
    # Methods that act between the penultimate and the last stage (ABN's attention branch, CVT's cross-view attention)
    # run the same weights in two calls; nothing is copied or registered twice, so checkpoints and weight files keep
    # the backbone's own layout.

    @property
    def trunk_channels(self) -> int:
        """Channels of the map :meth:`forward_trunk` returns (the penultimate stage's output)."""
        return self._split()[1]

    @property
    def last_stage(self) -> nn.Module:
        """The modules after the trunk, in order (for a method that needs a second copy of their structure)."""
        return nn.Sequential(*self._last_modules())

    def forward_trunk(self, x: Tensor) -> Tensor:
        """Input → the penultimate stage's feature map (ResNet: through layer3; AlexNet: through conv4 + ReLU)."""
        first_of_last = self._split()[0]
        for module in self._modules_in_order()[:first_of_last]:
            x = module(x)
        return x

    def forward_last(self, x: Tensor) -> Tensor:
        """The trunk's map → the last stage's map: ``forward_last(forward_trunk(x))`` equals ``forward(x)``."""
        for module in self._last_modules():
            x = module(x)
        return x

    def _last_modules(self) -> list[nn.Module]:
        first_of_last = self._split()[0]
        return self._modules_in_order()[first_of_last:]

    def _modules_in_order(self) -> list[nn.Module]:
        if isinstance(self.model, _AlexNetFeatures):
            return list(self.model.features)
        return list(self.model.values())  # timm's FeatureListNet runs its modules in this order

    def _split(self) -> tuple[int, int]:
        """(index of the first module of the last stage, channels of the trunk's output)."""
        if isinstance(self.model, _AlexNetFeatures):
            return _ALEXNET_LAST_STAGE, 256
        if not isinstance(self.model, nn.ModuleDict):
            raise ConfigError(
                f"Backbone {self.name!r} cannot be split before its last stage ({type(self.model).__name__} does not "
                "run its stages as a sequence of modules). Use a ResNet-like timm model (resnet18, resnet50, "
                f"convnext_atto, ...) or {ALEXNET}."
            )
        info = self.model.feature_info.info
        penultimate = info[-2]["module"].replace(".", "_")  # timm's feature nets flatten "stages.2" to "stages_2"
        names = list(self.model.keys())
        return names.index(penultimate) + 1, info[-2]["num_chs"]


class _AlexNetFeatures(nn.Module):
    """torchvision AlexNet's ``features`` (Krizhevsky 2014 "one weird trick" variant) without the final max-pool.

    The attribute name ``features`` and torchvision's layer indices are kept, so a torchvision AlexNet checkpoint loads
    as is; built here rather than from ``torchvision.models.alexnet()`` to skip initialising its 58M-weight classifier.
    """

    def __init__(self, in_chans: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 64, 11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


def create_backbone(
    name: str, in_chans: int = 1, weights: str | None = None, output_stride: int | None = None
) -> Backbone:
    """Build a backbone by name, randomly initialised or from a local weights file.

    Args:
        name: any timm model name (``timm.list_models()``) or ``tv_alexnet``.
        in_chans: input channels (1 for mammograms).
        weights: path of a local ``.pth/.pt/.bin/.ckpt`` or ``.safetensors`` file; None for random initialisation.
        output_stride: reduce the backbone's stride with dilation (timm models that support it; AlexNet is fixed at 16).

    Raises:
        ConfigError: unknown name, unsupported output stride, a weights value that would need a download, or a weights
            file that is missing, unreadable or made for another architecture.
    """
    _check_weights_value(weights)
    kwargs = {"in_chans": in_chans} if output_stride is None else {"in_chans": in_chans, "output_stride": output_stride}
    if name == ALEXNET:
        backbone = _create_alexnet(in_chans, output_stride)
    else:
        _check_timm_name(name)
        backbone = _create_timm(name, kwargs)
    if weights is not None:
        _load_weights(backbone, Path(weights), kwargs)
    return backbone


def _check_weights_value(weights: str | None) -> None:
    if weights is None:
        return
    if weights.lower() in _DOWNLOAD_WEIGHTS or weights.startswith(("hf-hub:", "timm/")):
        raise ConfigError(
            f"weights={weights!r} would need a download, which bilatcf never does (it must run offline). "
            "Download the weights yourself and pass the local file path, e.g. "
            "weights=/data/resnet18.pth, or leave weights unset to train from scratch."
        )
    if not Path(weights).is_file():
        raise ConfigError(
            f"Backbone weights file {weights!r} does not exist. Pass the path of a local "
            ".pth/.pt/.bin/.ckpt or .safetensors file, or leave weights unset to train from scratch."
        )


def _check_timm_name(name: str) -> None:
    if name.startswith("hf-hub:"):
        raise ConfigError(
            f"Backbone {name!r} would be downloaded from the Hugging Face Hub, which bilatcf never does. "
            "Pass the timm architecture name and a local weights file instead."
        )
    if timm.is_model(name):
        return
    containing = [*timm.list_models(f"*{name}*"), *([ALEXNET] if name in ALEXNET else [])]
    if containing:
        close = sorted(containing, key=lambda n: -difflib.SequenceMatcher(None, name, n).ratio())[:8]
    else:
        close = difflib.get_close_matches(name, [*timm.list_models(), ALEXNET], n=8)
    hint = f" Close names: {', '.join(close)}." if close else ""
    raise ConfigError(
        f"Unknown backbone {name!r}: not a timm model name and not {ALEXNET!r}.{hint} "
        "List timm's names with `python -c \"import timm; print(timm.list_models('*resnet*'))\"`."
    )


def _create_alexnet(in_chans: int, output_stride: int | None) -> Backbone:
    if output_stride not in (None, 16):
        raise ConfigError(
            f"Backbone {ALEXNET!r} has a fixed output stride of 16; got output_stride={output_stride}. "
            "Leave output_stride unset or use a timm backbone (e.g. resnet18) for a finer feature map."
        )
    return Backbone(_AlexNetFeatures(in_chans), ALEXNET, out_channels=256, stride=16)


def _create_timm(name: str, kwargs: dict, state_dict: dict[str, Tensor] | None = None) -> Backbone:
    """Build a timm feature extractor; ``state_dict`` (full-model layout) is loaded by timm before it drops the head."""
    overlay = {"state_dict": state_dict, "source": None}  # source None: never resolve to a hub download
    pretrained = {"pretrained": True, "pretrained_cfg_overlay": overlay} if state_dict else {}
    try:
        model = timm.create_model(name, features_only=True, out_indices=(-1,), **pretrained, **kwargs)
    except (TypeError, ValueError, RuntimeError, AssertionError) as error:
        raise ConfigError(
            f"timm cannot build backbone {name!r} as a feature extractor with {kwargs}: {error}. "
            "Drop output_stride or choose another backbone."
        ) from error
    info = model.feature_info
    return Backbone(model, name, out_channels=info.channels()[-1], stride=info.reduction()[-1])


def _load_weights(backbone: Backbone, path: Path, kwargs: dict) -> None:
    """Load a file in the Backbone layout (or a full-model layout with the same names) directly; otherwise load the
    full-model layout through timm, whose feature extractors rename modules (``stages.0`` -> ``stages_0``)."""
    state = _read_state_dict(path)
    full = _full_model(backbone.name, kwargs)
    own = set(backbone.model.state_dict())
    head = set(full.state_dict()) - own  # the classifier (and whatever else the feature extractor drops)
    if backbone.name == ALEXNET or _is_complete(_strip_prefixes(state, own | head), own):
        checked = _checked_state_dict(backbone.model, state, path, backbone.name, skip=head)
        backbone.model.load_state_dict(checked, strict=False)  # strict=False only tolerates num_batches_tracked
        return
    checked = _checked_state_dict(full, state, path, backbone.name, skip=_classifier_keys(full))
    backbone.model = _create_timm(backbone.name, kwargs, state_dict=checked).model


def _full_model(name: str, kwargs: dict) -> nn.Module:
    """The whole architecture, head included, on the meta device (names and shapes only: no memory, no init cost)."""
    with torch.device("meta"):
        return torchvision.models.alexnet() if name == ALEXNET else timm.create_model(name, **kwargs)


def _classifier_keys(full: nn.Module) -> set[str]:
    names = full.pretrained_cfg.get("classifier") or ()
    names = (names,) if isinstance(names, str) else names
    return {f"{name}.{kind}" for name in names for kind in ("weight", "bias")}


def _is_complete(state: Mapping[str, Tensor], keys: set[str]) -> bool:
    return all(key in state or key.endswith("num_batches_tracked") for key in keys)


def _checked_state_dict(
    model: nn.Module, state: Mapping[str, Tensor], path: Path, name: str, skip: set[str]
) -> dict[str, Tensor]:
    """Match a file's tensors to ``model`` or raise a ConfigError naming the first offending keys.

    ``skip`` keys may be present or absent (the head). ``num_batches_tracked`` buffers may be absent (older torchvision
    files).
    """
    expected = model.state_dict()
    state = _strip_prefixes(state, set(expected) | skip)
    state = _adapt_input_conv(state, expected)
    unexpected = [key for key in state if key not in expected and key not in skip]
    missing = [key for key in expected if key not in state and not key.endswith("num_batches_tracked")]
    wrong = [
        f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    found = {"missing": missing, "unexpected": unexpected, "shape mismatch": wrong}
    problems = [f"{label} ({len(keys)}): {', '.join(keys[:_SHOWN_KEYS])}" for label, keys in found.items() if keys]
    if problems:
        raise ConfigError(
            f"Weights file {str(path)!r} does not fit backbone {name!r}: {'; '.join(problems)}. "
            f"Pass a file saved from {name} (its own checkpoint or a bilatcf backbone), or the backbone "
            "name the file was made for."
        )
    return {key: value for key, value in state.items() if key in expected}


def _strip_prefixes(state: Mapping[str, Tensor], known: set[str]) -> dict[str, Tensor]:
    """Remove wrapper prefixes (``module.``, ``model.``, ...) from each key until it is a known key or has none left."""
    stripped = {}
    for key, value in state.items():
        while key not in known and key.startswith(_PREFIXES):
            key = key.split(".", 1)[1]
        stripped[key] = value
    return stripped


def _adapt_input_conv(state: dict[str, Tensor], expected: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Turn an RGB input conv into a grayscale one by summing its weights over the input channels.

    A grayscale image fed to an RGB network is replicated to (x, x, x), and conv(W, (x, x, x)) = conv(W_r + W_g + W_b,
    x): the summed kernel gives exactly the activations the RGB network would give, so the pretrained features are kept.
    The input conv is the first 4-D weight of the model.
    """
    key = next((k for k, v in expected.items() if v.ndim == 4), None)
    if key is None or key not in state:
        return state
    weight, target = state[key], expected[key]
    if weight.ndim == 4 and weight.shape[1] == 3 and target.shape[1] == 1 and weight.shape[0] == target.shape[0]:
        state = {**state, key: weight.sum(dim=1, keepdim=True)}
    return state


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """Read a raw state dict, or the one under ``state_dict``/``model`` (Lightning and many training scripts)."""
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as error:
            raise MissingDependencyError("safetensors", f"Loading {path}") from error
        state = load_file(str(path))
    elif path.suffix in _TORCH_SUFFIXES:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # unpickling fails with many exception types; all mean the same to the user
            raise ConfigError(
                f"Cannot read weights file {str(path)!r} with torch.load(weights_only=True): {error}. "
                "Save a plain state dict: torch.save(model.state_dict(), path)."
            ) from error
    else:
        raise ConfigError(
            f"Weights file {str(path)!r} has an unsupported extension; use .pth, .pt, .bin, .ckpt or .safetensors."
        )
    while isinstance(state, Mapping) and ("state_dict" in state or "model" in state):
        state = state.get("state_dict", state.get("model"))
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(
            f"Weights file {str(path)!r} does not hold a state dict (a mapping of names to tensors, "
            "possibly under 'state_dict' or 'model'). Save one with "
            "torch.save(model.state_dict(), path)."
        )
    return dict(state)
