"""On-disk cache of preprocessed images, so only the first epoch pays for decoding and cropping full-size mammograms.

Entries live under ``cache_dir()/preprocessed/`` (never next to the user's data) and are keyed by the source file's
path, size and modification time plus the preprocessing config and the laterality tag: editing an image or changing
the config simply misses the cache, so stale entries are never served. Images are stored as uint16 ``.npy``
(quantisation error below 1e-5, half the size of float32 on disk) with the geometry in a JSON file beside them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from bilatcf.data.io import atomic_write
from bilatcf.data.preprocess import PreprocessConfig, PreprocessInfo
from bilatcf.data.types import ImageRecord
from bilatcf.errors import DataError

_FORMAT_VERSION = 1  # bump when the stored layout or the preprocessing algorithm changes
_SCALE = np.iinfo(np.uint16).max

Preprocessor = Callable[[ImageRecord], tuple[np.ndarray, PreprocessInfo]]


def cache_dir() -> Path:
    """The library's cache folder: ``$BILATCF_CACHE`` if set, else ``~/.cache/bilatcf``; created on first use."""
    path = Path(os.environ.get("BILATCF_CACHE") or Path.home() / ".cache" / "bilatcf").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


class PreprocessedCache:
    """Preprocessed images keyed by source file and preprocessing config.

    Safe with several DataLoader workers or processes: entries are written to a temporary file and renamed into
    place, so a reader sees either nothing or a complete entry, and two writers of one entry write the same bytes.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "preprocessed"
        self.root.mkdir(parents=True, exist_ok=True)

    def get_or_compute(
        self, record: ImageRecord, config: PreprocessConfig, fn: Preprocessor
    ) -> tuple[np.ndarray, PreprocessInfo]:
        """Return the cached ``(image, info)`` for ``record`` under ``config``, computing and storing it on a miss.

        Args:
            record: the image's manifest record (its ``path`` must exist).
            config: the preprocessing config ``fn`` applies (part of the key).
            fn: computes ``(image float32 [H, W] in [0, 1], info)`` from the record on a cache miss.
        """
        image_path, info_path = self._entry(record, config)
        if image_path.is_file() and info_path.is_file():
            try:
                info = PreprocessInfo.from_dict(json.loads(info_path.read_text()))
                return np.load(image_path).astype(np.float32) / _SCALE, info
            except (OSError, ValueError, KeyError, TypeError):
                pass  # a damaged entry (e.g. a disk filled up mid-write elsewhere) is recomputed and replaced
        image, info = fn(record)
        stored = np.round(np.clip(image, 0.0, 1.0) * _SCALE).astype(np.uint16)
        buffer = io.BytesIO()
        np.save(buffer, stored)
        atomic_write(info_path, json.dumps(info.to_dict()).encode())
        atomic_write(image_path, buffer.getvalue())
        return stored.astype(np.float32) / _SCALE, info

    def _entry(self, record: ImageRecord, config: PreprocessConfig) -> tuple[Path, Path]:
        try:
            stat = os.stat(record.path)
        except OSError as error:
            raise DataError(
                f"{record.path}: image file not found or unreadable ({error}); check the manifest's 'path' column."
            ) from error
        key = json.dumps(
            {
                "version": _FORMAT_VERSION,
                "path": os.path.abspath(record.path),
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "laterality": record.laterality,
                "config": asdict(config),
            },
            sort_keys=True,
        )
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        folder = self.root / digest[:2]
        return folder / f"{digest}.npy", folder / f"{digest}.json"
