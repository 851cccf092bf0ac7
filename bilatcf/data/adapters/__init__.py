"""Dataset adapters: each public mammography dataset, read as distributed, → canonical manifest records.

One module per dataset; :data:`ADAPTERS` maps the name given to ``bilatcf data index --dataset`` to it. Every adapter
returns an :class:`IndexResult`: the records and the problems (rows and files it could not use, with the reason,
and notes about the kept images). See ``docs/data.md`` ("Real datasets") for each dataset's policies.
"""

from __future__ import annotations

from pathlib import Path

from bilatcf.data.adapters import cbis_ddsm, cmmd, folder, inbreast, rsna, vindr
from bilatcf.data.adapters.base import Adapter, IndexOptions, IndexResult, Problem, check_output_folder
from bilatcf.errors import ConfigError

ADAPTERS: dict[str, Adapter] = {
    adapter.name: adapter
    for adapter in (
        Adapter("inbreast", inbreast.index, "INbreast: INbreast.csv, AllDICOMs, AllXML ROIs", frozenset({"masks_dir"})),
        Adapter("cbis", cbis_ddsm.index, "CBIS-DDSM: the four case-description CSVs and the NBIA DICOM folders"),
        Adapter("vindr", vindr.index, "VinDr-Mammo: breast-level and finding annotations, images/*.dicom"),
        Adapter("rsna", rsna.index, "RSNA Screening Mammography: train.csv and train_images"),
        Adapter("cmmd", cmmd.index, "CMMD: the clinical sheet joined to the DICOM headers", frozenset({"labels"})),
        Adapter("folder", folder.index, "any folder of MG DICOMs, optional labels CSV", frozenset({"labels"})),
    )
}
#: Other names accepted for an adapter: the names of its module and of its configs/data YAML.
ALIASES = {"cbis_ddsm": "cbis"}


def get_adapter(name: str) -> Adapter:
    """The adapter registered under ``name`` (or an alias of it)."""
    adapter = ADAPTERS.get(ALIASES.get(name, name))
    if adapter is None:
        raise ConfigError(f"unknown dataset {name!r}; the adapters are: {', '.join(ADAPTERS)}.")
    return adapter


def index_dataset(name: str, options: IndexOptions) -> IndexResult:
    """Index a dataset folder with the adapter ``name``.

    Raises:
        ConfigError: unknown adapter, an option the adapter does not take, or an output folder inside the dataset.
        DataError: the dataset folder is not what the adapter expects (a table is missing or has other columns).
    """
    adapter = get_adapter(name)
    root = Path(options.root)
    if not root.is_dir():
        raise ConfigError(f"--root {root} is not a folder; give the folder the dataset was downloaded into.")
    for option, value in (("masks_dir", options.masks_dir), ("labels", options.labels)):
        if value is not None and option not in adapter.takes:
            raise ConfigError(f"--{option} is not used by the {adapter.name} adapter; leave it out.")
    if options.labels is not None and not Path(options.labels).is_file():
        raise ConfigError(f"--labels {options.labels} is not a file; give the labels table (.csv, or .xlsx for cmmd).")
    check_output_folder(options.masks_dir, root, "--masks_dir")
    return adapter.index(options)


__all__ = ["ADAPTERS", "ALIASES", "Adapter", "IndexOptions", "IndexResult", "Problem", "get_adapter", "index_dataset"]
