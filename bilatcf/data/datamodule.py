"""DataModules: :class:`BilateralDataModule` (pairs, every bilateral method) and :class:`UnilateralDataModule` (toy
presets).

``BilateralDataModule()`` with no argument trains on the embedded synthetic dataset (generated once, cached on disk), so
every command works on a fresh machine. ``source="manifest"`` reads a canonical manifest CSV (see ``docs/data.md``).
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from bilatcf.data.manifest import read_manifest
from bilatcf.data.pairing import make_pairs
from bilatcf.data.preprocess import PreprocessConfig, map_boxes, map_mask, preprocess
from bilatcf.data.splits import assign_splits
from bilatcf.data.synthetic import SyntheticConfig, load_or_generate
from bilatcf.data.transforms import PairedAugment
from bilatcf.data.types import BilateralBatch, ImageRecord, Pair, TrainingImage, check_batch
from bilatcf.data.validate import check_images, describe, manifest_cache_name
from bilatcf.errors import ConfigError, DataError

log = logging.getLogger(__name__)
_IMAGE_KEYS = ("target", "reference", "target_mask", "healthy", "target_other", "reference_other")
#: The smallest (H, W) accepted for every source: the synthetic generator's floor (manifest data gets the same one).
MIN_IMAGE_SIZE = (32, 16)
#: The splits each Lightning stage reads; ``setup`` refuses to start a stage whose splits are empty.
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}


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
        if self.dataset.lesion_types:
            # The generator's finding kinds in this breast (e.g. "malignant_mass"; empty when lesion-free), for
            # methods with per-type heads (HAM). Manifest data has no such column, so its meta lacks the key.
            meta["lesion_types"] = list(self.dataset.lesion_types[i])
        return self.dataset.images[i], self.dataset.masks[i], self.dataset.healthy[i], meta


class FileSource(ImageSource):
    """Images read from files (PNG/JPEG/TIFF/NPY/DICOM) and preprocessed: crop, orient, resize.

    A lesion-free image (``abnormal == 0``) without a mask file gets an all-zero mask: its mask is known to be empty,
    so it counts in the metrics computed outside lesions. ``dicom_for_processing`` is the DICOM reader's policy for
    FOR PROCESSING images (:func:`bilatcf.data.dicom.set_for_processing_policy`); it is set for the process here and
    again before each decode, so DataLoader workers started with ``spawn`` read with it too.
    """

    def __init__(self, config: PreprocessConfig, dicom_for_processing: str = "refuse") -> None:
        from bilatcf.data.cache import PreprocessedCache

        self.config = config
        self.cache = PreprocessedCache()
        self.dicom_for_processing = dicom_for_processing
        self._set_reader_options()

    def _set_reader_options(self) -> None:
        from bilatcf.data.dicom import set_for_processing_policy

        set_for_processing_policy(self.dicom_for_processing)

    def _read(self, record: ImageRecord) -> np.ndarray:
        from bilatcf.data.io import read_image

        self._set_reader_options()
        return read_image(record.path)

    def is_cached(self, record: ImageRecord) -> bool:
        return self.cache.contains(record, self.config)

    def store(self, record: ImageRecord) -> tuple[np.ndarray, Any]:
        """The preprocessed image and its geometry, from the cache or decoded and stored."""
        return self.cache.get_or_compute(
            record, self.config, lambda r: preprocess(self._read(r), r.laterality, self.config)
        )

    def load(self, record):
        from bilatcf.data.io import read_mask

        image, info = self.store(record)
        expected = tuple(self.config.image_size)
        if image.shape != expected:
            raise DataError(
                f"{record.path}: preprocessed image has shape {image.shape}, expected {expected}; "
                "clear the cache (`bilatcf data cache --clear`) if the preprocessing changed."
            )
        if record.mask_path:
            mask = map_mask(read_mask(record.mask_path), info).astype(np.float32)
        else:
            mask = np.zeros_like(image) if record.abnormal == 0 else None
        meta = {**info.to_dict(), "boxes": map_boxes(record.boxes, info)}
        return image, mask, None, meta

    def warm(self, record: ImageRecord, image: np.ndarray) -> None:
        """Preprocess an image the decode check has just read into the cache, so the first epoch does not decode it."""
        self.cache.get_or_compute(record, self.config, lambda r: preprocess(image, r.laterality, self.config))


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
            target_abnormal=pair.target.abnormal,
            ref_abnormal=pair.reference.abnormal,
            has_mask=mask is not None,
            has_healthy=healthy is not None,
            meta={
                **meta,
                "boxes": sample.pop("boxes"),
                "image_id": pair.target.image_id,
                "path": pair.target.path,
                "reference_id": pair.reference.image_id,
                "patient_id": pair.target.patient_id,
                "laterality": pair.target.laterality,
                "view": pair.target.view,
                "reference_is_self": pair.reference_is_self,
                "index": index,  # the pair's index in its split: keys per-sample randomness in the models
            },
        )
        return sample


class _EpochKeyed(Dataset):
    """A list of ready samples indexed by :class:`EpochSampler`'s ``(epoch, index)`` keys."""

    def __init__(self, samples: list[dict[str, Any]]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        return self.samples[key[1]]


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


class _StagedDataModule(pl.LightningDataModule):
    """What both DataModules share: splits checked per stage in ``setup``, the first batch checked on the device."""

    _checked = False

    def _needed_splits(self, stage: str | None) -> tuple[str, ...]:
        """The splits ``stage`` reads; validation is not needed when the trainer skips it (limit_val_batches = 0)."""
        splits = STAGE_SPLITS.get(stage, ("train",))
        trainer = getattr(self, "trainer", None)
        if stage == "fit" and trainer is not None and not trainer.limit_val_batches:
            splits = ("train",)
        return splits

    def on_after_batch_transfer(self, batch: BilateralBatch, dataloader_idx: int) -> BilateralBatch:
        if not self._checked:
            check_batch(batch)
            self._checked = True
        return batch


class BilateralDataModule(_StagedDataModule):
    """Bilateral pairs for every method: synthetic by default, or any dataset in the canonical manifest format.

    Every option is checked here, where it enters, so a bad value fails before any data is generated or read. With
    ``source="manifest"``, :meth:`setup` decodes every image and mask once (cached, see
    :mod:`bilatcf.data.validate`) and refuses files that cannot be used, unless ``skip_bad_images``.

    Args:
        source: ``synthetic`` (embedded generator, cached) or ``manifest`` (a CSV in the canonical format).
        manifest: path of the manifest CSV (``source="manifest"``), or a folder of mammography DICOM files (read
            with the ``folder`` adapter: every field from the headers, labels unknown; for ``predict_split="all"``).
        root: folder that relative paths in the manifest are resolved against (default: the CSV's folder).
        task: ``malignancy`` (pairs whose target has a lesion; label = malignant) or ``abnormality`` (all pairs).
        image_size: (H, W) of the images the models see; at least 32 x 16.
        batch_size: pairs per batch (per process under DDP), at least 1.
        num_workers: DataLoader worker processes, 0 or more.
        fold: k-fold cross-validation fold in ``[0, num_folds)`` (None: patient-wise 8:1:1 split).
        num_folds: number of folds when ``fold`` is given, at least 3 (a test, a val and a train fold).
        split_seed: seed of the patient-wise split.
        missing_partner: ``drop`` images without a contralateral partner, or use the image itself (``mirror-self``).
        four_view: also load the ipsilateral other view of target and reference (SFF baseline).
        augment: paired geometric augmentation of training pairs (one draw for target, reference, mask, healthy).
        shuffle: shuffle training pairs.
        seed: seed of shuffling and augmentation.
        num_patients: synthetic patients, at least 1.
        lesion_contrast: synthetic lesion contrast in (0, 1] (None: the generator's default).
        distractor_rate: fraction of synthetic patients with symmetric distractors (None: the generator's default).
        synthetic_seed: seed of the synthetic generator.
        views: views generated by the synthetic source.
        misalignment: how differently the synthetic left and right breasts are positioned and compressed, as a
            fraction of the image height (None: the generator's default, 0; see ``SyntheticConfig``).
        skip_bad_images: manifest images that cannot be used (missing, corrupt, blank, too small, bad mask) are
            dropped with a printed list instead of stopping ``setup`` with an error.
        dicom_for_processing: DICOM images marked FOR PROCESSING (the detector's raw signal): ``refuse`` them (they
            are then unusable images, see ``skip_bad_images``) or ``warn`` and read them.
        predict_split: what ``bilatcf predict`` reads: the ``test`` pairs, or ``all``: every image of the data with
            its contralateral image, labelled or not (new exams; e.g. ``--data.manifest`` a folder of DICOM files).
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
        skip_bad_images: bool = False,
        dicom_for_processing: Literal["refuse", "warn"] = "refuse",
        predict_split: Literal["test", "all"] = "test",
    ) -> None:
        super().__init__()
        _check_choice("source", source, ("synthetic", "manifest"))
        _check_choice("dicom_for_processing", dicom_for_processing, ("refuse", "warn"))
        _check_choice("predict_split", predict_split, ("test", "all"))
        if source == "manifest" and not manifest:
            raise ConfigError(
                "--data.source manifest needs --data.manifest PATH: a CSV with one row per image in the canonical "
                "format (its columns are described in docs/data.md, 'Manifest columns'). `bilatcf data index "
                "--dataset NAME --root DIR --out manifest.csv` writes one for a public dataset as downloaded; "
                "`bilatcf data synth --out DIR` writes an example manifest with its image files."
            )
        _check_image_size(image_size)
        _check_integer("batch_size", batch_size, 1, "pairs per batch (per process)")
        _check_integer("num_workers", num_workers, 0, "DataLoader worker processes")
        _check_integer("num_folds", num_folds, 3, "k-fold needs a test, a val and at least one train fold, so it")
        if fold is not None:
            _check_integer("fold", fold, 0, "a fold number", below=num_folds)
        for name, value in (("split_seed", split_seed), ("seed", seed), ("synthetic_seed", synthetic_seed)):
            _check_integer(name, value, 0, "a seed")
        _check_integer("num_patients", num_patients, 1, "the number of synthetic patients")
        _check_synthetic_knobs(
            lesion_contrast=lesion_contrast, distractor_rate=distractor_rate, misalignment=misalignment, views=views
        )
        self.save_hyperparameters()
        self.source_name = source
        self.records: list[ImageRecord] = []
        self.pairs: dict[str, list[Pair]] = {}
        self.report = None

    # ------------------------------------------------------------------ setup
    def prepare_data(self) -> None:
        """Decode-check the manifest's files once per machine (Lightning calls this on one process only).

        The other processes of a DDP run then find every result in the cache in ``setup``. Errors are left to
        ``setup``, which raises them on every process alike.
        """
        if self.hparams.source != "manifest" or self.pairs:
            return
        try:
            self._usable(self._read_manifest(), self._file_source(), announce=False)
        except DataError:
            pass

    def build_cache(self, progress: bool = True) -> tuple[int, int]:
        """Decode-check every manifest image and store its preprocessed version, so training decodes nothing.

        What ``bilatcf data cache --build`` runs. Unusable images are counted, not raised (``bilatcf data check``
        lists them with their reasons); images already cached are only looked up.

        Returns:
            (images now in the cache, images that cannot be used).
        """
        if self.hparams.source != "manifest":
            raise ConfigError(
                "--build needs a manifest data config (source: manifest); the synthetic data is generated into the "
                "cache when it is first used and needs no build."
            )
        records, source = self._read_manifest(), self._file_source()
        problems = check_images(
            records,
            tuple(self.hparams.image_size),
            cache_name=manifest_cache_name(self.hparams.manifest, self.hparams.dicom_for_processing),
            warm=source.warm,
            progress=progress,
        )
        bad = {problem.index for problem in problems}
        usable = [record for index, record in enumerate(records) if index not in bad]
        missing = [record for record in usable if not source.is_cached(record)]
        for record in tqdm(missing, desc="caching images", unit="image", disable=not progress or not missing):
            source.store(record)
        return len(usable), len(bad)

    def _read_manifest(self) -> list[ImageRecord]:
        manifest = Path(self.hparams.manifest)
        if manifest.is_dir():
            return _index_folder(manifest)
        # Missing files are left to the decode check, which reports them with the others (and can skip them).
        return read_manifest(self.hparams.manifest, root=self.hparams.root, check_files=False)

    def _file_source(self) -> FileSource:
        return FileSource(
            PreprocessConfig(image_size=tuple(self.hparams.image_size)), self.hparams.dicom_for_processing
        )

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
        source = self._file_source()
        return self._usable(self._read_manifest(), source), source

    def _usable(self, records: list[ImageRecord], source: FileSource, announce: bool = True) -> list[ImageRecord]:
        """The records whose files decode and fit the model; the others stop setup, or are skipped when asked to."""
        h = self.hparams
        problems = check_images(
            records,
            tuple(h.image_size),
            cache_name=manifest_cache_name(h.manifest, h.dicom_for_processing),
            warm=source.warm,
            progress=rank_zero_only.rank == 0,
        )
        if not problems:
            return records
        name = Path(h.manifest).name
        listing = describe(problems, lambda index: f"{name} row {index + 2}")  # read_manifest keeps one record per row
        bad = {problem.index for problem in problems}
        usable = [record for index, record in enumerate(records) if index not in bad]
        if not h.skip_bad_images or not usable:
            also = "" if usable else " (all of them, so --data.skip_bad_images cannot help)"
            raise DataError(
                f"{len(bad)} of the {len(records)} images of manifest {h.manifest} cannot be used{also}:\n{listing}\n"
                f"Fix: repair or replace these files, or remove their rows; `bilatcf data check {h.manifest}` lists "
                "every problem. To train on the other images, pass --data.skip_bad_images true."
            )
        if announce:
            _announce(
                f"skipping {len(bad)} of the {len(records)} images of manifest {h.manifest} that cannot be used "
                f"(--data.skip_bad_images):\n{listing}"
            )
        return usable

    def setup(self, stage: str | None = None) -> None:
        """Build the pairs (once) and refuse a stage whose splits are empty, before any step runs."""
        if not self.pairs:
            self._build()
        for split in self._needed_splits(stage):
            if not self.pairs[split]:
                raise DataError(self._empty_split_message(split, stage or "fit"))

    def _build(self) -> None:
        h = self.hparams
        records, self.image_source = self._records()
        self.records = assign_splits(records, seed=h.split_seed, fold=h.fold, num_folds=h.num_folds)
        pairs, self.report = make_pairs(
            self.records, task=h.task, missing_partner=h.missing_partner, four_view=h.four_view
        )
        _announce(f"pairing: {self.report.summary()}")
        self.pairs = {split: [p for p in pairs if p.target.split == split] for split in ("train", "val", "test")}
        self.pairs["predict"] = self.pairs["test"]
        if h.predict_split == "all":
            self.pairs["predict"], _ = make_pairs(
                self.records, task=h.task, missing_partner=h.missing_partner, four_view=h.four_view, every_image=True
            )

    def _empty_split_message(self, split: str, stage: str) -> str:
        """Why ``split`` has no pair and the fix for the source in use (never a synthetic option for a manifest)."""
        h = self.hparams
        split_of_records = "test" if split == "predict" else split
        images = sum(record.split == split_of_records for record in self.records)
        which = "the predict split (the test pairs)" if split == "predict" else f"the {split} split"
        found = f"its {images} images give no {h.task} pair" if images else "no image is in it"
        text = f"{which} is empty: `{stage}` needs it, but {found} ({self.report.summary()}). Fix: "
        if h.source == "synthetic":
            text += (
                f"use more patients: --data.num_patients (now {h.num_patients}; val and test get a tenth of them "
                "each and about half have a lesion, so use 50 or more)"
            )
        elif images:
            text += "check the 'abnormal' and 'malignant' labels of those images, or choose another --data.task"
        elif h.fold is not None:
            text += f"use fewer folds (--data.num_folds, now {h.num_folds}); k-fold ignores the split column"
        else:
            text += (
                f"give some patients split={split_of_records} in the manifest's split column, or leave the split "
                "column empty so bilatcf assigns a patient-wise 8:1:1 split (--data.split_seed changes the draw, "
                "--data.fold gives k-fold cross-validation)"
            )
        if split == "val" and stage == "fit":
            text += "; or train without validation: --trainer.limit_val_batches 0"
        return text + "."

    def training_images(self, lesion_free: bool | None = None) -> Iterator[TrainingImage]:
        """Each distinct image of the training split once, unaugmented, as the model sees it (after ``setup``).

        For methods that build state from the training split before training (a tumour bank cut with the lesion
        masks, a set of normal images), e.g. in their own ``setup`` hook, which Lightning calls after this
        DataModule's. Every image whose split is ``train`` is yielded, in the task's pairs or not.

        Args:
            lesion_free: True: only images with ``abnormal == 0``; False: only ``abnormal == 1``; None: all.

        Raises:
            RuntimeError: ``setup`` has not run yet.
        """
        if not self.pairs:
            raise RuntimeError(_NOT_SET_UP)
        records = [r for r in self.records if r.split == "train" and _keeps(lesion_free, r.abnormal)]
        return (self._training_image(record) for record in records)

    def _training_image(self, record: ImageRecord) -> TrainingImage:
        image, mask, _, _ = self.image_source.load(record)
        return TrainingImage(
            image=torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
            mask=None if mask is None else torch.from_numpy(np.asarray(mask) > 0.5).float(),
            abnormal=record.abnormal,
            malignant=record.malignant,
            image_id=record.image_id,
        )

    def _dataset(self, split: str) -> PairDataset:
        augment = PairedAugment() if split == "train" and self.hparams.augment else None
        return PairDataset(
            self.pairs[split], self.image_source, augment, seed=self.hparams.seed, four_view=self.hparams.four_view
        )

    def _loader(self, split: str) -> DataLoader:
        if not self.pairs:
            raise RuntimeError(_NOT_SET_UP)
        if not self.pairs[split]:
            raise DataError(self._empty_split_message(split, f"the {split} dataloader"))
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

    @property
    def num_pairs(self) -> dict[str, int]:
        return {split: len(pairs) for split, pairs in self.pairs.items()}


class UnilateralDataModule(_StagedDataModule):
    """Single images of the toy presets (``vagan``, ``cxgan``) for CX-GAN / VA-GAN / AnoGAN style experiments.

    Batches are :class:`BilateralBatch` with ``reference`` = ``target`` (there is no contralateral side) so every model
    and metric works unchanged; images are rescaled from the presets' [-1, 1] to [0, 1]. Every toy image has a known
    mask (all-zero for class 0), so ``has_mask`` is True throughout and ``target_abnormal`` = ``ref_abnormal`` = the
    class. Every preset has its own train, val and test images (``cxgan``'s validation images are carved out of its
    training images, see :func:`bilatcf.data.toy.carve_validation`), so model selection never reads a test image.

    Args:
        preset: ``vagan`` or ``cxgan``.
        num_images: images to generate, at least 2 (None: the papers' 10 000).
        batch_size: images per batch (per process), at least 1.
        num_workers: DataLoader worker processes, 0 or more.
        seed: seed of the generator.
        shuffle: shuffle training images (off: the same order on any number of processes, for DDP comparisons).
    """

    def __init__(
        self,
        preset: Literal["vagan", "cxgan"] = "vagan",
        num_images: int | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        from bilatcf.data.toy import PRESETS

        super().__init__()
        _check_choice("preset", preset, PRESETS)
        if num_images is not None:
            _check_integer("num_images", num_images, 2, "a toy preset needs one image per class, so it")
        _check_integer("batch_size", batch_size, 1, "images per batch (per process)")
        _check_integer("num_workers", num_workers, 0, "DataLoader worker processes")
        _check_integer("seed", seed, 0, "a seed")
        self.save_hyperparameters()
        self.source_name = f"toy:{preset}"
        self.splits: dict[str, list[int]] = {}

    def setup(self, stage: str | None = None) -> None:
        from bilatcf.data.toy import make_toy

        h = self.hparams
        if not self.splits:
            self.toy = make_toy(h.preset, num_images=h.num_images, seed=h.seed)
            self.splits = {s: np.flatnonzero(self.toy.splits == s).tolist() for s in ("train", "val", "test")}
            self.splits["predict"] = self.splits["test"]
        for split in self._needed_splits(stage):
            if not self.splits[split]:
                raise DataError(
                    f"the {split} split of toy preset {h.preset!r} is empty: `{stage or 'fit'}` needs it, but "
                    f"{len(self.toy)} images are too few to give every split an image of each class. Fix: use more "
                    "images: --data.num_images (100 or more)."
                )

    def _image(self, i: int) -> torch.Tensor:
        return torch.from_numpy((self.toy.images[i] + 1.0) / 2.0).clamp(0, 1).float()

    def _sample(self, i: int) -> dict[str, Any]:
        image = self._image(i)[None]
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
            "target_abnormal": label,
            "ref_abnormal": label,
            "has_mask": True,  # known for every toy image: all-zero for class 0
            "has_healthy": False,
            "meta": {"image_id": f"{self.hparams.preset}_{i}", "index": i, "boxes": _mask_boxes(self.toy.masks[i])},
            "target_other": None,
            "reference_other": None,
        }

    def training_images(self, lesion_free: bool | None = None) -> Iterator[TrainingImage]:
        """Each training image once (see :meth:`BilateralDataModule.training_images`); class 1 is abnormal.

        The toy findings are not graded benign or malignant, so ``malignant`` is -1.
        """
        if not self.splits:
            raise RuntimeError(_NOT_SET_UP)
        indices = [i for i in self.splits["train"] if _keeps(lesion_free, int(self.toy.labels[i]))]
        return (
            TrainingImage(
                image=self._image(i),
                mask=torch.from_numpy(self.toy.masks[i]).float(),
                abnormal=int(self.toy.labels[i]),
                malignant=-1,
                image_id=f"{self.hparams.preset}_{i}",
            )
            for i in indices
        )

    def _loader(self, split: str) -> DataLoader:
        dataset = _EpochKeyed([self._sample(i) for i in self.splits[split]])
        shuffle = split == "train" and self.hparams.shuffle
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            sampler=EpochSampler(dataset, shuffle, self.hparams.seed),  # the same order after a resume, under DDP
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


_NOT_SET_UP = (
    "the DataModule has no data yet: call datamodule.setup('fit') first (Lightning calls it before the model's own "
    "setup hook, so a method can read the training split there)."
)


def _index_folder(folder: Path) -> list[ImageRecord]:
    """The records of a folder of mammography DICOM files (the ``folder`` adapter), its skipped files announced."""
    from bilatcf.data.adapters import index_dataset
    from bilatcf.data.adapters.base import IndexOptions

    result = index_dataset("folder", IndexOptions(root=folder))
    if result.skipped:
        listing = "\n".join(f"  - {problem}" for problem in result.skipped[:20])
        more = f"\n  ... and {len(result.skipped) - 20} more" if len(result.skipped) > 20 else ""
        _announce(f"{folder}: {len(result.skipped)} file(s) skipped:\n{listing}{more}")
    if not result.records:
        raise DataError(
            f"--data.manifest {folder} is a folder, read as DICOM files of mammograms, but none is usable "
            f"({result.summary()}). Give a folder of MG DICOM files, or a manifest CSV (`bilatcf data index`)."
        )
    return result.records


@rank_zero_only
def _announce(text: str) -> None:
    """One message on stdout from the first process only (a DDP run would print it once per process otherwise)."""
    log.info(text)
    print(text, flush=True)


def _keeps(lesion_free: bool | None, abnormal: int) -> bool:
    return lesion_free is None or abnormal == (0 if lesion_free else 1)


def _check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"--data.{name} = {value!r} is not a valid choice; use one of: {', '.join(choices)}.")


def _check_integer(name: str, value: object, minimum: int, what: str, below: int | None = None) -> None:
    """``value`` must be an integer in ``[minimum, below)``; the message names the option as it is typed."""
    integer = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if integer and value >= minimum and (below is None or value < below):
        return
    allowed = f"in [{minimum}, {below})" if below is not None else f"of at least {minimum}"
    raise ConfigError(f"--data.{name} = {value!r} is out of range: {what} must be an integer {allowed}.")


def _check_image_size(value: object) -> None:
    size = tuple(value) if isinstance(value, (list, tuple)) else ()
    integers = len(size) == 2 and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in size)
    if integers and size[0] >= MIN_IMAGE_SIZE[0] and size[1] >= MIN_IMAGE_SIZE[1]:
        return
    raise ConfigError(
        f"--data.image_size = {value!r} is out of range: give two integers H W with H >= {MIN_IMAGE_SIZE[0]} and "
        f"W >= {MIN_IMAGE_SIZE[1]} (the smallest images the synthetic generator draws; the same floor holds for "
        "manifest data), e.g. --data.image_size [128,64]. Some backbones need larger inputs."
    )


def _check_synthetic_knobs(**knobs: Any) -> None:
    """The synthetic generator's own range checks, run here so a bad value fails when the DataModule is built."""
    for name, value in knobs.items():
        if value is None:
            continue
        try:
            SyntheticConfig(**{name: value})
        except ConfigError as error:
            reason = str(error).split(": ", 1)[-1]  # drop the generator's "SyntheticConfig.<name> = <value>: "
            raise ConfigError(f"--data.{name} = {value!r} is out of range: {reason}") from None
        except (TypeError, ValueError) as error:
            raise ConfigError(f"--data.{name} = {value!r} is not a valid value ({error}).") from None


def _mask_boxes(mask: np.ndarray) -> list[list[float]]:
    """Boxes of the connected components of a binary mask."""
    import cv2

    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return [[float(x), float(y), float(x + w), float(y + h)] for x, y, w, h, _ in stats[1:count]]
