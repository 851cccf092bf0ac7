"""Prediction from research code: :func:`load` a checkpoint, :meth:`Predictor.predict` on two images.

``bilatcf predict`` scores the pairs of a dataset through a Trainer; a script that has two files (or two arrays) in hand
needs the same numbers without one. :func:`load` rebuilds the trained model from what its checkpoint records (model
name, init arguments, weights, data config) and :class:`Predictor` prepares images exactly as
:class:`~bilatcf.data.datamodule.BilateralDataModule` prepares manifest images (read, crop to the breast, chest wall on
the left, resize and pad to the training size, the cache's 16-bit rounding), so a pair gets the score
``bilatcf predict`` writes for it (tests/test_api.py compares the two).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bilatcf.data.cache import from_stored, to_stored
from bilatcf.data.io import read_image
from bilatcf.data.preprocess import PreprocessConfig, PreprocessInfo, preprocess, unmap_map
from bilatcf.data.types import BilateralBatch, check_batch
from bilatcf.errors import ConfigError, DataError
from bilatcf.models.base import BilateralModule
from bilatcf.models.outputs import BilateralOutput

ImageInput = str | os.PathLike | np.ndarray | torch.Tensor
#: Laterality values accepted by :meth:`Predictor.predict` (as in the manifest's ``laterality`` column).
LATERALITIES = {"L": "L", "LEFT": "L", "R": "R", "RIGHT": "R"}
_MAPS = ("cam", "explanation", "counterfactual")


@dataclass(frozen=True)
class Prediction:
    """What the model says about one pair, with its maps in both geometries.

    Attributes:
        score: the task score: a probability (``score_kind = "probability"``), or the raw anomaly score.
        pred: the predicted class at the model's operating threshold.
        head_scores: the score of each extra head of the model (e.g. DisAsymNet's ``asymmetry``).
        cam: ``[H, W]`` the class activation map in [0, 1], in model geometry (the pixels of :attr:`target`).
        explanation: ``[H, W]`` the explanation / residual map (models that make one), in model geometry.
        counterfactual: ``[H, W]`` the target without its lesion (models that make one), in model geometry.
        cam_original / explanation_original / counterfactual_original: the same maps in the target's original
            geometry (:func:`~bilatcf.data.preprocess.unmap_map`: padding, resize, flip and crop undone; 0 outside
            the crop), pixel for pixel over the image as given.
        target / reference: ``[H, W]`` the two images as the model saw them (breast at the top left, in [0, 1]).
        target_geometry: how the target was cropped, flipped and resized.
    """

    score: float
    pred: int
    head_scores: dict[str, float]
    cam: np.ndarray
    cam_original: np.ndarray
    target: np.ndarray
    reference: np.ndarray
    target_geometry: PreprocessInfo
    explanation: np.ndarray | None = None
    explanation_original: np.ndarray | None = None
    counterfactual: np.ndarray | None = None
    counterfactual_original: np.ndarray | None = None


@dataclass
class Predictor:
    """A trained model in eval mode plus the preprocessing of the data it was trained on.

    Build one with :func:`load`; or directly from a model and a data config (``{"init_args": {"image_size": [H, W]}}``
    is enough) for a model trained without a bilatcf DataModule.

    Attributes:
        model: the LightningModule, in eval mode.
        data_config: ``{"class_path", "init_args"}`` of the DataModule the model was trained on (None if unknown).
    """

    model: BilateralModule
    data_config: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.model.eval()

    def __repr__(self) -> str:
        name = getattr(self.model, "model_name", type(self.model).__name__)
        return f"Predictor(model={name!r}, image_size={self.image_size}, device={self.device})"

    @property
    def image_size(self) -> tuple[int, int] | None:
        """``(H, W)`` the model was trained at (from the data config); None when the config does not say."""
        size = self._data_options.get("image_size")
        return (int(size[0]), int(size[1])) if size is not None else None

    @property
    def device(self) -> torch.device:
        return self.model.device

    def predict(
        self,
        target: ImageInput,
        reference: ImageInput,
        *,
        target_laterality: str,
        reference_laterality: str | None = None,
        view: str | None = None,
    ) -> Prediction:
        """Score one target breast against its contralateral reference.

        Args:
            target: the image being classified: a file path (PNG/JPEG/TIFF/NPY/DICOM, read by
                :func:`~bilatcf.data.io.read_image`) or a 2-D array (floats in [0, 1], or unsigned integers, scaled
                by their dtype's maximum), as acquired: preprocessing crops and orients it.
            reference: the contralateral image, the same way; it is mirrored like the target is.
            target_laterality: ``L`` or ``R`` (or ``LEFT`` / ``RIGHT``), the target's side.
            reference_laterality: the reference's side; default: the other side.
            view: the view (``CC``, ``MLO``, ...), for models that read it (e.g. ``wu`` with ``four_view``).

        Raises:
            DataError: a file is missing or unreadable, or an array is not a grey image in range.
            ConfigError: a laterality is not L/R, or the checkpoint's data config gives no way to prepare images.
        """
        size = self._checked_input_size()
        target_side = _laterality("target_laterality", target_laterality)
        if reference_laterality is None:
            reference_side = "R" if target_side == "L" else "L"
        else:
            reference_side = _laterality("reference_laterality", reference_laterality)
        config = PreprocessConfig(image_size=size)
        target_image, info = preprocess(_read("target", target), target_side, config)
        reference_image, _ = preprocess(_read("reference", reference), reference_side, config)
        target_image, reference_image = _as_cached(target_image), _as_cached(reference_image)
        batch = _pair_batch(target_image, reference_image, info, target, reference, target_side, view)
        output = self.predict_batch(batch)
        maps = {key: _first_map(getattr(output, key)) for key in _MAPS}
        return Prediction(
            score=float(output.score[0]),
            pred=int(output.pred[0]),
            head_scores={name: float(score[0]) for name, score in output.head_scores.items()},
            target=target_image,
            reference=reference_image,
            target_geometry=info,
            **maps,
            **{f"{key}_original": unmap_map(value, info) for key, value in maps.items() if value is not None},
        )

    def predict_batch(self, batch: BilateralBatch) -> BilateralOutput:
        """The model's evaluated output for a batch (as ``bilatcf predict`` computes it), without gradients.

        The batch is checked against the data contract and moved to the model's device. Methods that optimise at
        evaluation (``test_time_optimization``, e.g. AnoGAN's latent search) still get gradients for their search;
        outside a Trainer they use their validation setting (e.g. AnoGAN's ``val_search_steps``).
        """
        check_batch(batch, where="the batch given to predict_batch")
        return self.model.predict_step(batch.to(self.device))

    @property
    def _data_options(self) -> dict[str, Any]:
        return dict((self.data_config or {}).get("init_args") or {})

    def _checked_input_size(self) -> tuple[int, int]:
        class_path = str((self.data_config or {}).get("class_path", ""))
        if class_path.endswith("UnilateralDataModule"):
            preset = self._data_options.get("preset")
            raise ConfigError(
                f"this model was trained on the unilateral toy preset {preset!r}, not on mammograms, so "
                "Predictor.predict cannot prepare images for it; pass batches of "
                "bilatcf.UnilateralDataModule to Predictor.predict_batch."
            )
        if self._data_options.get("four_view"):
            raise ConfigError(
                "this model was trained with four_view=True: it reads the other view of both breasts too, which "
                "Predictor.predict does not take; pass a BilateralBatch with target_other/reference_other to "
                "Predictor.predict_batch."
            )
        if self.image_size is None:
            raise ConfigError(
                "the data config records no image_size, so the model's input size is unknown (the checkpoint was "
                "written without a bilatcf DataModule). Build the predictor with it: "
                "Predictor(model, {'init_args': {'image_size': [H, W]}})."
            )
        return self.image_size


def load(ckpt_path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Predictor:
    """A :class:`Predictor` for a checkpoint written by ``bilatcf fit`` (or by any Trainer fitting a bilatcf model).

    The model is built from the checkpoint's registry name and init arguments, its weights (and per-rank state) are
    loaded, and it is put on ``map_location`` in eval mode. The file is read with ``torch.load(weights_only=True)``:
    no code from it runs.

    Raises:
        ConfigError: the file is missing, is not a bilatcf checkpoint, or was written by a model this version lacks.
    """
    from bilatcf.checkpoints import read_checkpoint
    from bilatcf.registry import get_model_class

    info = read_checkpoint(ckpt_path)  # checks the file and says what it is when it is not a bilatcf checkpoint
    _ = info.model_class_path  # refuses a model this version does not have, naming the checkpoint
    device = torch.device(map_location)
    # read_checkpoint keeps what it needs and drops the weights, so they are read once more here.
    checkpoint = torch.load(info.path, map_location="cpu", weights_only=True)
    model = get_model_class(info.model_name)(**info.model_init_args)
    model.on_load_checkpoint(checkpoint)  # per-rank state into the state dict, as Lightning does before loading it
    try:
        model.load_state_dict(checkpoint["state_dict"], strict=model.strict_loading)
    except RuntimeError as error:
        raise ConfigError(
            f"the weights of {info.path} do not fit model '{info.model_name}' built from its recorded arguments "
            f"({str(error).splitlines()[0]}); was the file written by another version of bilatcf?"
        ) from None
    return Predictor(model.to(device), info.data)


# ---------------------------------------------------------------------------------------------------------- helpers
def _laterality(name: str, value: Any) -> str:
    side = LATERALITIES.get(str(value).strip().upper()) if isinstance(value, str) else None
    if side is None:
        raise ConfigError(f"{name}={value!r} is not a laterality: give 'L' or 'R' (or 'LEFT' / 'RIGHT').")
    return side


def _read(role: str, image: ImageInput) -> np.ndarray:
    """A file or an array as float32 ``[H, W]`` in [0, 1], by the rules of :func:`~bilatcf.data.io.read_image`."""
    from bilatcf.data.io import _to_unit_float

    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if path.is_dir():
            raise DataError(f"{role} image {path} is a folder; pass the path of one image file.")
        if not path.is_file():
            raise DataError(f"{role} image not found: {path}; check the path (relative paths start at {Path.cwd()}).")
        return read_image(path)
    if isinstance(image, (np.ndarray, torch.Tensor)):
        array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else image
        if array.ndim > 2 and all(side == 1 for side in array.shape[:-2]):
            array = array.reshape(array.shape[-2:])  # [1, H, W] or [1, 1, H, W], as tensors often come
        # The checks and integer scaling read_image applies to a file's array, so an array and its .npy agree.
        return _to_unit_float(array, Path(f"the {role} array"))
    raise DataError(f"{role} must be an image file path or a 2-D array, got {type(image).__name__}.")


def _as_cached(image: np.ndarray) -> np.ndarray:
    """The image as the preprocessed-image cache returns it (16-bit rounding), which is what the DataModule feeds."""
    return from_stored(to_stored(image))


def _pair_batch(
    target: np.ndarray,
    reference: np.ndarray,
    info: PreprocessInfo,
    target_input: ImageInput,
    reference_input: ImageInput,
    laterality: str,
    view: str | None,
) -> BilateralBatch:
    """A batch of one unlabelled pair, with the meta the DataModule gives a manifest pair."""
    paths = [str(x) if isinstance(x, (str, os.PathLike)) else "" for x in (target_input, reference_input)]
    image = torch.from_numpy(target)[None]
    sample = {
        "target": image,
        "reference": torch.from_numpy(reference)[None],
        "target_mask": torch.zeros_like(image),
        "healthy": torch.zeros_like(image),
        "label": -1,
        "ref_label": -1,
        "asym_label": -1,
        "has_mask": False,
        "has_healthy": False,
        "meta": {
            **info.to_dict(),
            "boxes": [],
            "image_id": Path(paths[0]).stem if paths[0] else "target",
            "path": paths[0],
            "reference_id": Path(paths[1]).stem if paths[1] else "reference",
            "patient_id": "",
            "laterality": laterality,
            "view": (view or "").upper(),
            "reference_is_self": False,
            "index": 0,
        },
    }
    return BilateralBatch.collate([sample])


def _first_map(value: torch.Tensor | None) -> np.ndarray | None:
    return None if value is None else value[0, 0].float().cpu().numpy()
