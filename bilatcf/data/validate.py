"""Decode every image and mask of a manifest once, before training, and say which files cannot be used and why.

A manifest can be valid row by row and still point to files that break training hours in: a truncated PNG, a text
file saved as ``x.png``, an array with NaN, a blank export, an image smaller than the model's input, a mask of another
size. :func:`check_images` finds all of them in one parallel pass (decoding releases the GIL, so threads suffice).

What decoding found depends only on the file contents, so it is cached per manifest under
``cache_dir()/checks/`` keyed by each file's path, size and modification time and :data:`CHECK_VERSION`: a second
``fit`` on the same files decodes nothing, and an edited or replaced file is checked again. The checks that depend on
the run (the model's input size, the record's labels) are applied to the cached facts every time.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from bilatcf.data.cache import cache_dir
from bilatcf.data.io import atomic_write, read_image, read_mask
from bilatcf.data.types import ImageRecord
from bilatcf.errors import DataError

CHECK_VERSION = 1  # bump when a check is added or changed, so cached results of the old checks are not trusted
MAX_LISTED = 10
_NOT_FOUND = (
    "image file not found; correct the manifest's 'path' column (relative paths are resolved against the manifest's "
    "folder, or against the root folder when one is given: --data.root, or --root of `bilatcf data check`)."
)

#: Called with each decodable, non-blank image (e.g. to fill the preprocessing cache from the same decode); a
#: DataError it raises becomes a problem of that image.
Warm = Callable[[ImageRecord, np.ndarray], None]


@dataclass(frozen=True)
class ImageProblem:
    """One reason why the image of ``records[index]`` cannot be used; ``file`` is the image or its mask."""

    index: int
    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


@dataclass(frozen=True)
class _Decoded:
    """What decoding one image and its mask found; depends on the file contents only, so it can be cached."""

    shape: tuple[int, int] | None  # the image's (H, W), None when it could not be decoded
    problems: tuple[tuple[str, str], ...]  # (file, reason)
    lesion_pixels: int  # positive pixels of the mask (0 without a mask)

    def to_json(self) -> dict:
        return {"shape": self.shape, "problems": self.problems, "lesion_pixels": self.lesion_pixels}

    @classmethod
    def from_json(cls, data: dict) -> _Decoded:
        shape = tuple(data["shape"]) if data["shape"] is not None else None
        return cls(shape, tuple((str(f), str(r)) for f, r in data["problems"]), int(data["lesion_pixels"]))


def check_images(
    records: Sequence[ImageRecord],
    image_size: tuple[int, int],
    *,
    cache_name: str | None = None,
    warm: Warm | None = None,
    workers: int | None = None,
    progress: bool = True,
    recheck: bool = False,
) -> list[ImageProblem]:
    """Decode every record's image (and mask) once and return every problem found, in record order.

    Args:
        records: the records to check (paths absolute, as :func:`~bilatcf.data.manifest.read_manifest` returns them).
        image_size: ``(H, W)`` of the model's input; smaller images are reported.
        cache_name: names the cache file of these records (e.g. the manifest's absolute path); None: no cache.
        warm: called with each usable decoded image, so one decode can also fill the preprocessing cache.
        workers: decoding threads (default: the CPU count, at most 8).
        progress: show a progress bar while decoding.
        recheck: decode every file even when an unchanged file's result is cached.
    """
    cache = _CheckCache(cache_name) if cache_name else None
    keys = [_key(record) for record in records]
    decoded: dict[int, _Decoded] = {}
    if cache is not None and not recheck:
        decoded = {index: cache.entries[key] for index, key in enumerate(keys) if key in cache.entries}
    todo = [index for index in range(len(records)) if index not in decoded]
    if todo:
        workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_decode, records[index], warm): index for index in todo}
            with tqdm(total=len(todo), desc="checking images", unit="image", disable=not progress) as bar:
                for future in as_completed(futures):
                    decoded[futures[future]] = future.result()
                    bar.update()
    if cache is not None and todo:
        cache.save({keys[index]: result for index, result in decoded.items()})
    problems = []
    for index, record in enumerate(records):
        problems += _problems(index, record, decoded[index], image_size)
    return problems


def manifest_cache_name(manifest: str | Path, dicom_for_processing: str = "refuse") -> str:
    """The ``cache_name`` of a manifest's check: its absolute path plus the reader options that change what decoding
    finds (a FOR PROCESSING DICOM is a problem under ``refuse`` and a usable image under ``warn``)."""
    return f"{os.path.abspath(manifest)}|dicom_for_processing={dicom_for_processing}"


def describe(problems: Sequence[ImageProblem], place: Callable[[int], str], limit: int | None = MAX_LISTED) -> str:
    """The problems as indented lines ``place: file: reason``; beyond ``limit``, a count of the others."""
    shown = problems if limit is None else problems[:limit]
    lines = [f"  - {place(problem.index)}: {problem}" for problem in shown]
    if len(problems) > len(shown):
        lines.append(f"  ... and {len(problems) - len(shown)} more")
    return "\n".join(lines)


def _decode(record: ImageRecord, warm: Warm | None) -> _Decoded:
    if not Path(record.path).is_file():
        return _Decoded(None, ((record.path, _NOT_FOUND),), 0)
    try:
        image = read_image(record.path)
    except DataError as error:
        return _Decoded(None, ((record.path, _reason(error, record.path)),), 0)
    problems = []
    if image.size == 0 or image.min() == image.max():
        value = f"{float(image.flat[0]):.3g}" if image.size else "missing"
        problems.append((record.path, f"blank image: every pixel is {value}; re-export it or remove its row."))
    elif warm is not None:
        try:
            warm(record, image)
        except DataError as error:
            problems.append((record.path, f"preprocessing failed: {_reason(error, record.path)}"))
    lesion_pixels = 0
    if record.mask_path:
        mask_problem, lesion_pixels = _mask_problem(record.mask_path, image.shape)
        if mask_problem:
            problems.append((record.mask_path, mask_problem))
    return _Decoded(tuple(image.shape), tuple(problems), lesion_pixels)


def _mask_problem(path: str, shape: tuple[int, ...]) -> tuple[str, int]:
    if not Path(path).is_file():
        return "mask file not found; correct the manifest's 'mask_path' column or leave the cell empty.", 0
    try:
        mask = read_mask(path)
    except DataError as error:
        return f"unreadable mask: {_reason(error, path)}", 0
    if mask.shape != tuple(shape):
        return (
            f"the mask is {mask.shape[0]}×{mask.shape[1]} pixels but its image is {shape[0]}×{shape[1]}; a mask must "
            "match its image pixel for pixel (resize it with nearest-neighbour in the dataset adapter).",
            int(mask.sum()),
        )
    return "", int(mask.sum())


def _problems(index: int, record: ImageRecord, decoded: _Decoded, image_size: tuple[int, int]) -> list[ImageProblem]:
    """The cached file facts plus the checks that depend on this run (input size) and on the record (labels)."""
    problems = [ImageProblem(index, file, reason) for file, reason in decoded.problems]
    height, width = image_size
    if decoded.shape is not None and (decoded.shape[0] < height or decoded.shape[1] < width):
        problems.append(
            ImageProblem(
                index,
                record.path,
                f"the image is {decoded.shape[0]}×{decoded.shape[1]} pixels, smaller than the model input "
                f"{height}×{width} (H×W), so it would be upsampled; use a smaller input size (--data.image_size) "
                "or remove the image.",
            )
        )
    if record.abnormal == 0 and decoded.lesion_pixels > 0:
        problems.append(
            ImageProblem(
                index,
                record.mask_path,
                f"the image is marked lesion-free (abnormal = 0) but its mask marks {decoded.lesion_pixels} lesion "
                "pixels; correct the 'abnormal' column or the mask.",
            )
        )
    return problems


def _reason(error: DataError, path: str) -> str:
    """The message of a reader's error without its leading ``path:``, which the report prints once."""
    text = str(error)
    prefix = f"{path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _stat(path: str) -> list | None:
    if not path:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return [os.path.abspath(path), "missing"]
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


def _key(record: ImageRecord) -> str:
    text = json.dumps([CHECK_VERSION, _stat(record.path), _stat(record.mask_path)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class _CheckCache:
    """Decode results of one set of records (one manifest), in one JSON file rewritten atomically after each check.

    Only the entries of the latest check are kept, so the file does not grow with edits; two processes that check
    at the same time each write a complete file, and the one that loses the race only costs a decode next time.
    """

    def __init__(self, name: str) -> None:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        self.path = cache_dir() / "checks" / f"{digest}.json"
        self.entries: dict[str, _Decoded] = {}
        try:
            data = json.loads(self.path.read_text())
            if data.get("version") == CHECK_VERSION:
                self.entries = {key: _Decoded.from_json(value) for key, value in data["entries"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self.entries = {}  # no cache yet, or a damaged one: everything is decoded again

    def save(self, entries: dict[str, _Decoded]) -> None:
        data = {"version": CHECK_VERSION, "entries": {key: value.to_json() for key, value in entries.items()}}
        atomic_write(self.path, json.dumps(data).encode())
