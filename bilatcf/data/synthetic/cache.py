"""The synthetic dataset cache: ``<cache>/synthetic/<config.key()>.npz``, generated on a miss."""

from __future__ import annotations

import logging
from pathlib import Path

from bilatcf.data.cache import cache_dir as default_cache_dir
from bilatcf.data.synthetic.config import SyntheticConfig
from bilatcf.data.synthetic.dataset import SyntheticDataset
from bilatcf.data.synthetic.render import generate
from bilatcf.errors import DataError

log = logging.getLogger(__name__)


def load_or_generate(
    config: SyntheticConfig, cache_dir: str | Path | None = None, progress: bool = False
) -> SyntheticDataset:
    """Load the dataset from the cache (``<cache>/synthetic/<config.key()>.npz``), generating and caching it on a miss.

    A damaged cache file is regenerated; a read-only cache only costs the regeneration next time.
    """
    path = Path(cache_dir or default_cache_dir()) / "synthetic" / f"{config.key()}.npz"
    if path.is_file():
        try:
            dataset = SyntheticDataset.load(path)
            if dataset.config == config:
                return dataset
            log.warning("%s holds a different synthetic config; regenerating", path)
        except DataError as error:
            log.warning("%s; regenerating", error)
    dataset = generate(config, progress=progress)
    try:
        dataset.save(path)
    except OSError as error:
        log.warning("could not write the synthetic cache %s (%s); set BILATCF_CACHE to a writable folder", path, error)
    return dataset
