"""On-disk cache of preprocessed images, so only the first epoch pays for decoding and cropping full-size mammograms.

Entries live under ``cache_dir()/preprocessed/`` (never next to the user's data) and are keyed by the **contents** of
the source file (a SHA-256 of its bytes) plus the preprocessing config and the laterality tag: a dataset moved or
copied to another folder, or a file touched without being changed, reuses its entries; an edited image or a changed
config misses the cache, so stale entries are never served. Hashing a full-size DICOM costs about as much as reading
it, so the digest of each file is remembered under ``cache_dir()/digests/`` by (path, size, modification time): a
cached epoch reads two small files per image and decodes nothing. Images are stored as uint16 ``.npy`` (quantisation
error below 1e-5, half the size of float32 on disk) with the geometry in a JSON file beside them.

``bilatcf data cache --build DATA.yaml`` fills the cache ahead of training (:meth:`BilateralDataModule.build_cache`).
"""

from __future__ import annotations

import contextlib
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

_FORMAT_VERSION = 2  # bump when the stored layout or the preprocessing algorithm changes
_SCALE = np.iinfo(np.uint16).max


def to_stored(image: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] as the cache stores it: uint16 levels."""
    return np.round(np.clip(image, 0.0, 1.0) * _SCALE).astype(np.uint16)


def from_stored(stored: np.ndarray) -> np.ndarray:
    """A cached uint16 image as the float32 [0, 1] image the DataModule feeds."""
    return stored.astype(np.float32) / _SCALE


_HASH_BLOCK = 1 << 22  # 4 MiB reads while hashing

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
        self.digests = self.root.parent / "digests"

    def contains(self, record: ImageRecord, config: PreprocessConfig) -> bool:
        """Whether ``record`` under ``config`` has a complete entry (no decoding)."""
        return all(path.is_file() for path in self._entry(record, config))

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
                return from_stored(np.load(image_path)), info
            except (OSError, ValueError, KeyError, TypeError):
                pass  # a damaged entry (e.g. a disk filled up mid-write elsewhere) is recomputed and replaced
        image, info = fn(record)
        stored = to_stored(image)
        buffer = io.BytesIO()
        np.save(buffer, stored)
        atomic_write(info_path, json.dumps(info.to_dict()).encode())
        atomic_write(image_path, buffer.getvalue())
        return from_stored(stored), info

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
                "content": self._content_digest(record.path, stat),
                "laterality": record.laterality,
                "config": asdict(config),
            },
            sort_keys=True,
        )
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        folder = self.root / digest[:2]
        return folder / f"{digest}.npy", folder / f"{digest}.json"

    def _content_digest(self, path: str, stat: os.stat_result) -> str:
        """SHA-256 of the file's bytes, remembered by (absolute path, size, modification time)."""
        where = json.dumps([os.path.abspath(path), stat.st_size, stat.st_mtime_ns])
        memo = self.digests / f"{hashlib.sha256(where.encode()).hexdigest()[:32]}.txt"
        with contextlib.suppress(OSError):
            known = memo.read_text().strip()
            if len(known) == 64:
                return known
        content = hashlib.sha256()
        try:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(_HASH_BLOCK), b""):
                    content.update(block)
        except OSError as error:
            raise DataError(
                f"{path}: image file unreadable ({error}); check the manifest's 'path' column and the file's access."
            ) from error
        atomic_write(memo, content.hexdigest().encode())
        return content.hexdigest()
