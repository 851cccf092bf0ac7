"""The generated dataset in memory (:class:`SyntheticDataset`) and on disk (one ``.npz`` written atomically)."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bilatcf.data.synthetic.config import GENERATOR_VERSION, SyntheticConfig
from bilatcf.data.types import ImageRecord
from bilatcf.errors import DataError


@dataclass
class SyntheticDataset:
    """Generated images with their manifest records and pixel ground truth (arrays indexed like ``records``)."""

    config: SyntheticConfig
    records: list[ImageRecord]
    images: np.ndarray
    healthy: np.ndarray
    masks: np.ndarray
    distractor_masks: np.ndarray
    lesion_types: list[tuple[str, ...]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def save(self, path: str | Path) -> None:
        """Write one uncompressed ``.npz`` (arrays + JSON ``meta``) atomically: readers never see half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "config": asdict(self.config),
            "version": GENERATOR_VERSION,
            "records": [asdict(record) for record in self.records],
            "lesion_types": self.lesion_types,
        }
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                np.savez(
                    stream,
                    images=self.images,
                    healthy=self.healthy,
                    masks=self.masks,
                    distractor_masks=self.distractor_masks,
                    meta=np.array(json.dumps(meta)),
                )
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    @classmethod
    def load(cls, path: str | Path) -> SyntheticDataset:
        """Read a file written by :meth:`save`; a missing or damaged file raises :class:`DataError`."""
        path = Path(path)
        if not path.is_file():
            raise DataError(
                f"{path}: synthetic dataset file not found; create it with SyntheticDataset.save or "
                "`bilatcf data synth`."
            )
        try:
            with np.load(path, allow_pickle=False) as arrays:
                meta = json.loads(str(arrays["meta"]))
                loaded = {name: arrays[name] for name in ("images", "healthy", "masks", "distractor_masks")}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise DataError(
                f"{path}: not a readable synthetic dataset ({error}); delete it and generate again."
            ) from error
        records = [
            ImageRecord(**{**row, "boxes": tuple(tuple(box) for box in row["boxes"])}) for row in meta["records"]
        ]
        return cls(
            config=SyntheticConfig(**meta["config"]),
            records=records,
            lesion_types=[tuple(types) for types in meta["lesion_types"]],
            **loaded,
        )
