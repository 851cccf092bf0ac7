"""DataModules: :class:`BilateralDataModule` (pairs, every bilateral method) and :class:`UnilateralDataModule` (toy
presets).

``BilateralDataModule()`` with no argument trains on the embedded synthetic dataset (generated once, cached on disk), so
every command works on a fresh machine. ``source="manifest"`` reads a canonical manifest CSV (see ``docs/data.md``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from bilatcf.data.manifest import read_manifest
from bilatcf.data.pairing import make_pairs
from bilatcf.data.preprocess import PreprocessConfig, map_boxes, map_mask, preprocess
from bilatcf.data.splits import assign_splits
from bilatcf.data.synthetic import SyntheticConfig, load_or_generate
from bilatcf.data.transforms import PairedAugment
from bilatcf.data.types import BilateralBatch, ImageRecord, Pair, check_batch
from bilatcf.errors import DataError

log = logging.getLogger(__name__)
_IMAGE_KEYS = ("target", "reference", "target_mask", "healthy", "target_other", "reference_other")


class ImageSource:
    """Loads one record as (image [H,W] float32 in [0,1], lesion mask or None, healthy image or None, meta dict)."""

    def load(self, record: ImageRecord) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, dict[str, Any]]:
        raise NotImplementedError


class SyntheticSource(ImageSource):
    """Images of a generated :class:`SyntheticDataset`, already in the canonical orientation and size."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset
        self.index = {record.image_id: i for i, record in enumerate(dataset.records)}

    def load(self, record):
        i = self.index[record.image_id]
        meta = {
            "flipped": record.laterality == "R",
            "original_size": list(self.dataset.images.shape[1:]),
            "crop_box": [0, 0, self.dataset.images.shape[2], self.dataset.images.shape[1]],
            "boxes": [list(b) for b in record.boxes],
        }
        return self.dataset.images[i], self.dataset.masks[i], self.dataset.healthy[i], meta


class FileSource(ImageSource):
    """Images read from files (PNG/TIFF/NPY, DICOM once registered) and preprocessed: crop, orient, resize."""

    def __init__(self, config: PreprocessConfig) -> None:
        from bilatcf.data.cache import PreprocessedCache

        self.config = config
        self.cache = PreprocessedCache()

    def load(self, record):
        from bilatcf.data.io import read_image, read_mask

        image, info = self.cache.get_or_compute(
            record, self.config, lambda r: preprocess(read_image(r.path), r.laterality, self.config)
        )
        expected = tuple(self.config.image_size)
        if image.shape != expected:
            raise DataError(
                f"{record.path}: preprocessed image has shape {image.shape}, expected {expected}; "
                "clear the cache (`bilatcf data cache --clear`) if the preprocessing changed."
            )
        mask = map_mask(read_mask(record.mask_path), info).astype(np.float32) if record.mask_path else None
        meta = {**info.to_dict(), "boxes": map_boxes(record.boxes, info)}
        return image, mask, None, meta


class PairDataset(Dataset):
    """Bilateral pairs as sample dicts for :meth:`BilateralBatch.collate`.

    Indices may be ``(epoch, index)`` tuples (from :class:`EpochSampler`) so augmentation draws depend only on the seed,
    the epoch and the pair: the same under any number of workers or processes, and after a resume.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        source: ImageSource,
        augment: PairedAugment | None = None,
        seed: int = 0,
        four_view: bool = False,
    ):
        self.pairs = list(pairs)
        self.source = source
        self.augment = augment
        self.seed = seed
        self.four_view = four_view

    def _other_view(self, record: ImageRecord | None, like: np.ndarray) -> np.ndarray | None:
        """Four-view mode: the other view's image, or zeros when the study lacks it (so batches stay stackable)."""
        if not self.four_view:
            return None
        return self.source.load(record)[0] if record is not None else np.zeros_like(like)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        pair = self.pairs[index]
        target, mask, healthy, meta = self.source.load(pair.target)
        reference = self.source.load(pair.reference)[0]
        sample: dict[str, Any] = {
            "target": target,
            "reference": reference,
            "target_mask": mask if mask is not None else np.zeros_like(target),
            "healthy": healthy if healthy is not None else np.zeros_like(target),
            "target_other": self._other_view(pair.target_other, target),
            "reference_other": self._other_view(pair.reference_other, target),
            "boxes": meta.pop("boxes"),
        }
        if self.augment is not None:
            sample = self.augment(sample, np.random.default_rng((self.seed, epoch, index)))
        for key_ in _IMAGE_KEYS:
            if sample[key_] is not None:
                sample[key_] = torch.from_numpy(np.ascontiguousarray(sample[key_], dtype=np.float32))[None]
        sample["target_mask"] = (sample["target_mask"] > 0.5).float()
        sample.update(
            label=pair.label,
            ref_label=pair.ref_label,
            asym_label=pair.asym_label,
            has_mask=mask is not None,
            has_healthy=healthy is not None,
            meta={
                **meta,
                "boxes": sample.pop("boxes"),
                "image_id": pair.target.image_id,
                "reference_id": pair.reference.image_id,
                "patient_id": pair.target.patient_id,
                "laterality": pair.target.laterality,
                "view": pair.target.view,
                "reference_is_self": pair.reference_is_self,
                "index": index,  # the pair's index in its split: keys per-sample randomness in the models
            },
        )
        return sample


class EpochSampler(DistributedSampler):
    """A seeded shuffling sampler that yields ``(epoch, index)`` and shards itself across processes.

    The permutation depends on (seed, epoch) only, so a run resumed from a checkpoint sees the same order as an
    uninterrupted one; Lightning calls ``set_epoch`` on it every epoch.
    """

    def __init__(self, dataset: Dataset, shuffle: bool, seed: int) -> None:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        super().__init__(
            dataset,
            num_replicas=torch.distributed.get_world_size() if distributed else 1,
            rank=torch.distributed.get_rank() if distributed else 0,
            shuffle=shuffle,
            seed=seed,
        )

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, index) for index in super().__iter__())


class BilateralDataModule(pl.LightningDataModule):
    """Bilateral pairs for every method: synthetic by default, or any dataset in the canonical manifest format.

    Args:
        source: ``synthetic`` (embedded generator, cached) or ``manifest`` (a CSV in the canonical format).
        manifest: path of the manifest CSV (``source="manifest"``).
        root: folder that relative paths in the manifest are resolved against (default: the CSV's folder).
        task: ``malignancy`` (pairs whose target has a lesion; label = malignant) or ``abnormality`` (all pairs).
        image_size: (H, W) of the images the models see.
        batch_size: pairs per batch (per process under DDP).
        num_workers: DataLoader worker processes.
        fold: k-fold cross-validation fold (None: patient-wise 8:1:1 split).
        num_folds: number of folds when ``fold`` is given.
        split_seed: seed of the patient-wise split.
        missing_partner: ``drop`` images without a contralateral partner, or use the image itself (``mirror-self``).
        four_view: also load the ipsilateral other view of target and reference (SFF baseline).
        augment: paired geometric augmentation of training pairs (one draw for target, reference, mask, healthy).
        shuffle: shuffle training pairs.
        seed: seed of shuffling and augmentation.
        num_patients: synthetic patients.
        lesion_contrast: synthetic lesion contrast (None: the generator's default).
        distractor_rate: fraction of synthetic patients with symmetric distractors (None: the generator's default).
        synthetic_seed: seed of the synthetic generator.
        views: views generated by the synthetic source.
        misalignment: how differently the synthetic left and right breasts are positioned and compressed, as a
            fraction of the image height (None: the generator's default, 0; see ``SyntheticConfig``).
    """

    def __init__(
        self,
        source: Literal["synthetic", "manifest"] = "synthetic",
        manifest: str | None = None,
        root: str | None = None,
        task: Literal["malignancy", "abnormality"] = "malignancy",
        image_size: tuple[int, int] = (128, 64),
        batch_size: int = 16,
        num_workers: int = 0,
        fold: int | None = None,
        num_folds: int = 5,
        split_seed: int = 0,
        missing_partner: Literal["drop", "mirror-self"] = "drop",
        four_view: bool = False,
        augment: bool = True,
        shuffle: bool = True,
        seed: int = 0,
        num_patients: int = 1000,
        lesion_contrast: float | None = None,
        distractor_rate: float | None = None,
        synthetic_seed: int = 0,
        views: tuple[str, ...] = ("CC", "MLO"),
        misalignment: float | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if source == "manifest" and not manifest:
            raise DataError(
                "source='manifest' needs a manifest CSV: pass --data.manifest PATH "
                "(build one with `bilatcf data index`)."
            )
        self.source_name = source
        self.pairs: dict[str, list[Pair]] = {}
        self.report = None
        self._checked = False

    # ------------------------------------------------------------------ setup
    def _records(self) -> tuple[list[ImageRecord], ImageSource]:
        h = self.hparams
        if h.source == "synthetic":
            knobs = {
                "num_patients": h.num_patients,
                "image_size": tuple(h.image_size),
                "views": tuple(h.views),
                "seed": h.synthetic_seed,
                "lesion_contrast": h.lesion_contrast,
                "distractor_rate": h.distractor_rate,
                "misalignment": h.misalignment,
            }
            config = SyntheticConfig(**{k: v for k, v in knobs.items() if v is not None})
            dataset = load_or_generate(config, progress=True)
            return list(dataset.records), SyntheticSource(dataset)
        records = read_manifest(h.manifest, root=h.root)
        return records, FileSource(PreprocessConfig(image_size=tuple(h.image_size)))

    def setup(self, stage: str | None = None) -> None:
        if self.pairs:
            return
        h = self.hparams
        records, self.image_source = self._records()
        records = assign_splits(records, seed=h.split_seed, fold=h.fold, num_folds=h.num_folds)
        pairs, self.report = make_pairs(records, task=h.task, missing_partner=h.missing_partner, four_view=h.four_view)
        log.info("pairing: %s", self.report.summary())
        self.pairs = {split: [p for p in pairs if p.target.split == split] for split in ("train", "val", "test")}
        self.pairs["predict"] = self.pairs["test"]
        if not self.pairs["train"] and stage in (None, "fit"):
            raise DataError(
                f"no training pairs for task '{h.task}' ({self.report.summary()}); check the manifest's labels "
                "and splits, or choose another --data.task."
            )

    def _dataset(self, split: str) -> PairDataset:
        augment = PairedAugment() if split == "train" and self.hparams.augment else None
        return PairDataset(
            self.pairs[split], self.image_source, augment, seed=self.hparams.seed, four_view=self.hparams.four_view
        )

    def _loader(self, split: str) -> DataLoader:
        if not self.pairs.get(split):
            raise DataError(
                f"the {split} split is empty ({self.report.summary() if self.report else 'no pairs'}): "
                "use more patients (--data.num_patients) or check the manifest's split column."
            )
        dataset = self._dataset(split)
        shuffle = split == "train" and self.hparams.shuffle
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            sampler=EpochSampler(dataset, shuffle, self.hparams.seed),
            num_workers=self.hparams.num_workers,
            collate_fn=BilateralBatch.collate,
            drop_last=False,
            persistent_workers=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")

    def on_after_batch_transfer(self, batch: BilateralBatch, dataloader_idx: int) -> BilateralBatch:
        if not self._checked:
            check_batch(batch)
            self._checked = True
        return batch

    @property
    def num_pairs(self) -> dict[str, int]:
        return {split: len(pairs) for split, pairs in self.pairs.items()}


class UnilateralDataModule(pl.LightningDataModule):
    """Single images of the toy presets (``vagan``, ``cxgan``) for CX-GAN / VA-GAN / AnoGAN style experiments.

    Batches are :class:`BilateralBatch` with ``reference`` = ``target`` (there is no contralateral side) so every model
    and metric works unchanged; images are rescaled from the presets' [-1, 1] to [0, 1].
    """

    def __init__(
        self,
        preset: Literal["vagan", "cxgan"] = "vagan",
        num_images: int | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.source_name = f"toy:{preset}"
        self.splits: dict[str, list[int]] = {}

    def setup(self, stage: str | None = None) -> None:
        from bilatcf.data.toy import make_toy

        if self.splits:
            return
        h = self.hparams
        self.toy = make_toy(h.preset, num_images=h.num_images, seed=h.seed)
        self.splits = {split: np.flatnonzero(self.toy.splits == split).tolist() for split in ("train", "val", "test")}
        if not self.splits["val"]:  # presets with a train/test split only validate on the test images
            self.splits["val"] = self.splits["test"]
        self.splits["predict"] = self.splits["test"]

    def _sample(self, i: int) -> dict[str, Any]:
        image = torch.from_numpy((self.toy.images[i] + 1.0) / 2.0).clamp(0, 1)[None].float()
        mask = torch.from_numpy(self.toy.masks[i]).float()[None]
        label = int(self.toy.labels[i])
        return {
            "target": image,
            "reference": image,
            "target_mask": mask,
            "healthy": torch.zeros_like(image),
            "label": label,
            "ref_label": -1,
            "asym_label": label,
            "has_mask": bool(mask.any()),
            "has_healthy": False,
            "meta": {"image_id": f"{self.hparams.preset}_{i}", "index": i, "boxes": _mask_boxes(self.toy.masks[i])},
            "target_other": None,
            "reference_other": None,
        }

    def _loader(self, split: str) -> DataLoader:
        indices = self.splits[split]
        return DataLoader(
            [self._sample(i) for i in indices],
            batch_size=self.hparams.batch_size,
            shuffle=split == "train",
            num_workers=self.hparams.num_workers,
            collate_fn=BilateralBatch.collate,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")


def _mask_boxes(mask: np.ndarray) -> list[list[float]]:
    """Boxes of the connected components of a binary mask."""
    import cv2

    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return [[float(x), float(y), float(x + w), float(y + h)] for x, y, w, h, _ in stats[1:count]]
