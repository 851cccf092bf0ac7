"""``bilatcf benchmark --config configs/benchmark/<name>.yaml``: a leaderboard over models × data × seeds × folds.

Every cell (model entry, data entry, seed, fold) is one plain ``bilatcf fit`` run in its own folder
``<runs>/<name>/<cell id>/`` (training, then the test of the best checkpoint, which writes ``metrics.json``), started
as a subprocess exactly as a user would start it. The grid is resumable: a cell with a ``metrics.json`` is skipped, a
cell with a last checkpoint and no metrics resumes with ``--ckpt_path last``. After every finished cell the runner
writes ``leaderboard_<name>.csv`` (one row per finished cell) and renders ``leaderboard_<name>.md`` from that CSV
alone, deterministically: re-running a finished grid trains nothing and rewrites the same bytes.

Cells run on this machine (``--launcher subprocess``, ``jobs`` at a time), or through ``submitit``
(``pip install 'bilatcf[slurm]'``): ``--launcher local`` (its local executor, one process per cell) or
``--launcher slurm`` (one SLURM job array, a cell per array task). The config format is documented in
``docs/benchmarks.md``, "Leaderboards".
"""

from __future__ import annotations

import argparse
import csv
import difflib
import hashlib
import io
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bilatcf.errors import ConfigError, MissingDependencyError

DEFAULT_RUNS = "runs/benchmark"
DEFAULT_RESULTS = "benchmarks/results"
RECORD = "benchmark_cell.json"  # the runner's note in each cell folder: command, config hash, git, attempts
LOG = "benchmark.log"  # the cell's fit output (every attempt appended)
DOCS = "docs/benchmarks.md, 'Leaderboards'"
CONFIG_KEYS = ("name", "description", "models", "data", "seeds", "folds", "args", "jobs", "reference")
MODEL_KEYS = ("model", "label", "args")
DATA_KEYS = ("data", "label", "args")
REFERENCE_KEYS = ("source", "note", "columns", "values")
COLUMN_KEYS = ("name", "ours", "what")
#: Options the runner sets for every cell; a config that sets them would make cells share a folder or a seed.
OWNED_OPTIONS = ("--trainer.default_root_dir", "--seed_everything", "--ckpt_path")
#: Columns of the main table, in order, each shown when any cell of the table has it (so a CSV from before a metric
#: existed renders as it did); the ``test/expl_*`` metrics (``expl_pointing``, ``expl_loc_error``, ...) get a table
#: of their own, for the models that have them.
MAIN_METRICS = ("test/auc", "test/asymmetry_auc", "test/loc_error", "test/pointing", "test/seg_iou", "test/mean_tiou")
CI_METRICS = ("test/auc", "test/asymmetry_auc")
#: The CSV's leading and trailing columns; the metrics of metrics.json lie between them.
LEAD_COLUMNS = ("cell", "model", "label", "data", "seed", "fold")
TAIL_COLUMNS = ("train_seconds", "pairs_per_second", "attempts", "git", "config_hash")
#: CSV column naming the leaderboard a shared row was run for (:func:`shared_rows`); absent when no row is shared.
SHARED_COLUMN = "shared_from"
_IDENTITY_KEYS = ("model", "data", "seed")  # metrics.json keys the CSV has its own columns for
#: How a cell's ``bilatcf fit ...`` is started: this Python, as ``python -m bilatcf.cli`` (no console script needed).
FIT_PREFIX = (sys.executable, "-m", "bilatcf.cli")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ================================================================================================ the configuration
@dataclass(frozen=True)
class ModelEntry:
    """One row of the leaderboard: a registered model by name, or a model / ablation YAML."""

    label: str
    model: str  # registry name
    config: str | None  # the YAML given (None: the model was given by name)
    args: tuple[str, ...] = ()
    data_options: tuple[tuple[str, Any], ...] = ()  # the model's required DataModule options

    def selection(self) -> list[str]:
        return ["--config", self.config] if self.config else ["--model", self.model]


@dataclass(frozen=True)
class DataEntry:
    label: str
    config: str | None  # a data YAML (the value of --data), None for the synthetic default
    args: tuple[str, ...] = ()

    def selection(self) -> list[str]:
        return ["--data", self.config] if self.config else []


@dataclass(frozen=True)
class ReferenceColumn:
    name: str  # the paper's column, e.g. "AUC (b)"
    ours: str | None  # the metric of ours it is put next to (metrics.json key without ``test/``)
    what: str  # what the column measured: table, dataset, backbone


@dataclass(frozen=True)
class Reference:
    source: str
    note: str
    columns: tuple[ReferenceColumn, ...]
    values: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Missing:
    """A model entry whose model or YAML does not exist (yet): skipped with ``--skip-missing``."""

    label: str
    reason: str
    short: str  # for the .md: no path of this machine


@dataclass(frozen=True)
class Benchmark:
    path: str
    name: str
    description: str
    models: tuple[ModelEntry, ...]
    data: tuple[DataEntry, ...]
    seeds: tuple[int, ...]
    folds: tuple[int | None, ...]
    args: tuple[str, ...]
    jobs: int
    reference: Reference | None
    missing: tuple[Missing, ...] = ()
    labels: tuple[str, ...] = ()  # every model entry's label in config order, missing ones included


class _Problems:
    """Every problem of a config file, reported at once."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            listed = "\n".join(f"  - {item}" for item in self.items)
            raise ConfigError(
                f"{self.path}: {len(self.items)} problem(s) in the benchmark config:\n{listed}\n"
                f"The format is described in {DOCS}."
            )


def _unknown_keys(problems: _Problems, where: str, given: dict, valid: Sequence[str]) -> None:
    for key in given:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.add(where, f"unknown key '{key}'{hint}; valid keys: {', '.join(valid)}")


def _args(problems: _Problems, where: str, value: Any, owned: Sequence[str]) -> tuple[str, ...]:
    """Extra command-line arguments: a list (YAML numbers and booleans become their CLI spelling) or one string."""
    if value is None:
        return ()
    if isinstance(value, str):
        items = shlex.split(value)
    elif isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) for v in value):
        items = [str(v).lower() if isinstance(v, bool) else str(v) for v in value]
    else:
        problems.add(where, "give a list of command-line arguments, e.g. [--trainer.max_epochs, 8] (or one string)")
        return ()
    for item in items:
        flag = item.split("=", 1)[0]
        if flag in owned:
            problems.add(
                where,
                f"{flag} is set by the runner for every cell (folder, seed, fold, resume); remove it "
                "(seeds: and folds: choose seeds and folds)",
            )
    return tuple(items)


def _label_of_config(path: str) -> str:
    """The default label of a model YAML, as ``benchmarks/quality.py`` names it: the file stem, prefixed by the model
    for an ablation (``cgn/sbf``)."""
    p = Path(path)
    return f"{p.parent.name}/{p.stem}" if p.parent.parent.name == "ablations" else p.stem


def _is_path(value: str) -> bool:
    return value.endswith((".yaml", ".yml")) or "/" in value


def _read_yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text())


def _model_from_yaml(path: str, classes: dict[str, type]) -> tuple[str | None, str, bool]:
    """(registry name, whether the file is missing, the problem) of a model YAML: its ``model.class_path`` must be a
    registered model."""
    file = Path(path)
    if not file.is_file():
        return (
            None,
            True,
            (
                f"{path} does not exist (relative paths are read from the current folder, {Path.cwd()}). Check the "
                "path, or remove the entry"
            ),
        )
    try:
        content = _read_yaml(file)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same problem to the user
        return None, False, f"{path} is not readable YAML ({one_line(exc)})"
    model = content.get("model") if isinstance(content, dict) else None
    class_path = model.get("class_path") if isinstance(model, dict) else None
    if not isinstance(class_path, str):
        return (
            None,
            False,
            f"{path} has no model.class_path: give a model or ablation YAML (configs/models/, configs/ablations/)",
        )
    for name, cls in classes.items():
        if class_path in (f"{cls.__module__}.{cls.__qualname__}", cls.__qualname__) or class_path.endswith(
            "." + cls.__qualname__
        ):
            return name, False, ""
    return None, False, f"{path}: model.class_path {class_path} is not a registered model (see `bilatcf list`)"


def _registered() -> tuple[dict[str, type], list[str]]:
    """Every registered model class (hidden included) and the names `all` stands for (the non-hidden ones)."""
    from bilatcf.registry import get_model_class, list_models

    classes = {name: get_model_class(name) for name in list_models(include_hidden=True)}
    return classes, list_models()


def load_config(path: str | os.PathLike, skip_missing: bool = False) -> Benchmark:
    """Read and check a benchmark config; every problem is reported at once in one :class:`ConfigError`."""
    path = str(path)
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"benchmark config not found: {path}. The configs are in configs/benchmark/ ({DOCS}).")
    problems = _Problems(path)
    try:
        raw = _read_yaml(file)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"{path} is not readable YAML: {one_line(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the file must be a YAML mapping with the keys {', '.join(CONFIG_KEYS)} ({DOCS}).")
    _unknown_keys(problems, "top level", raw, CONFIG_KEYS)

    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.add("name", "give the leaderboard's name: letters, digits, '_', '.', '-' (it names the output files)")
        name = file.stem
    description = raw.get("description") or ""
    if not isinstance(description, str):
        problems.add("description", "give a text")
        description = ""

    folds_given = raw.get("folds") is not None
    owned = (*OWNED_OPTIONS, "--data.fold") if folds_given else OWNED_OPTIONS
    common = _args(problems, "args", raw.get("args"), (*owned, "--model", "--data"))

    jobs = raw.get("jobs", 1)
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        problems.add("jobs", f"{jobs!r}: give the number of cells run at once, an integer >= 1 (default 1)")
        jobs = 1

    seeds = _integers(problems, "seeds", raw.get("seeds"), required=True)
    folds: tuple[int | None, ...] = _integers(problems, "folds", raw.get("folds"), required=False) or (None,)

    models, missing, labels = _models(problems, raw.get("models"), owned, skip_missing)
    data = _data(problems, raw.get("data"), owned)
    reference = _reference(problems, raw.get("reference"), labels)
    problems.raise_if_any()
    return Benchmark(
        path=path,
        name=name,
        description=" ".join(description.split()),
        models=tuple(models),
        data=tuple(data),
        seeds=seeds,
        folds=folds,
        args=common,
        jobs=jobs,
        reference=reference,
        missing=tuple(missing),
        labels=tuple(labels),
    )


def _integers(problems: _Problems, key: str, value: Any, required: bool) -> tuple[int, ...]:
    if value is None:
        if required:
            problems.add(key, "give a list of integers, e.g. [0, 1, 2]")
        return ()
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        problems.add(key, f"{value!r}: give a non-empty list of integers, e.g. [0, 1, 2]")
        return ()
    if any(v < 0 for v in value) or len(set(value)) != len(value):
        problems.add(key, f"{value!r}: give distinct integers >= 0")
        return ()
    return tuple(value)


def _models(
    problems: _Problems, value: Any, owned: Sequence[str], skip_missing: bool
) -> tuple[list[ModelEntry], list[Missing], list[str]]:
    """The model entries that resolve, the missing ones (with ``skip_missing``) and every entry's label."""
    if value == "all":
        value = ["all"]
    if not isinstance(value, list) or not value:
        problems.add("models", "give a list of entries: a model name, a model/ablation YAML, or `all`")
        return [], [], []
    classes, visible = _registered()
    entries: list[tuple[str, dict]] = []  # (where, entry as a mapping)
    for i, item in enumerate(value):
        where = f"models[{i}]"
        if isinstance(item, str):
            item = {"model": item}
        if not isinstance(item, dict) or not isinstance(item.get("model"), str):
            problems.add(where, "give a model name, a YAML path, or a mapping with a 'model' key (and label, args)")
            continue
        _unknown_keys(problems, where, item, MODEL_KEYS)
        entries.append((where, item))
    # `all`: every registered, non-hidden model that no other entry names by its registry name.
    named = {item["model"] for _, item in entries if item["model"] != "all" and not _is_path(item["model"])}
    expanded: list[tuple[str, dict]] = []
    for where, item in entries:
        if item["model"] != "all":
            expanded.append((where, item))
            continue
        if "label" in item:
            problems.add(where, "`all` takes no label (each model is labelled by its name)")
        expanded += [(f"{where} (all: {n})", {**item, "model": n, "label": n}) for n in visible if n not in named]
    models: list[ModelEntry] = []
    missing: list[Missing] = []
    labels: list[str] = []
    for where, item in expanded:
        spec = item["model"]
        args = _args(problems, f"{where}.args", item.get("args"), (*owned, "--model", "--data", "--config"))
        config = spec if _is_path(spec) else None
        label = item.get("label", _label_of_config(spec) if config else spec)
        if not isinstance(label, str) or not label.strip():
            problems.add(f"{where}.label", "give a non-empty text")
            continue
        labels.append(label)
        if config:
            name, absent, reason = _model_from_yaml(config, classes)
        else:
            name, absent = (spec.lower(), False) if spec.lower() in classes else (None, True)
            close = difflib.get_close_matches(spec.lower(), list(classes), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            reason = (
                f"unknown model '{spec}'{hint}; registered models: {', '.join(visible)} (`bilatcf list`). Add the "
                "model, or remove the entry"
            )
        if name is None:
            if skip_missing and absent:
                short = f"{config} does not exist yet" if config else f"no model '{spec}' is registered yet"
                missing.append(Missing(label, reason, short))
            else:
                problems.add(where, reason + (" (--skip-missing runs the other entries)" if absent else ""))
            continue
        options = tuple(sorted(getattr(classes[name], "data_options", {}).items()))
        models.append(ModelEntry(label=label, model=name, config=config, args=args, data_options=options))
    _check_labels(problems, "models", labels)
    return models, missing, labels


def _data(problems: _Problems, value: Any, owned: Sequence[str]) -> list[DataEntry]:
    if not isinstance(value, list) or not value:
        problems.add("data", "give a list of entries: `synthetic`, a data YAML, or a mapping with data, label, args")
        return []
    entries: list[DataEntry] = []
    for i, item in enumerate(value):
        where = f"data[{i}]"
        if isinstance(item, str):
            item = {"data": item}
        if not isinstance(item, dict):
            problems.add(where, "give `synthetic`, a data YAML path, or a mapping with data, label, args")
            continue
        _unknown_keys(problems, where, item, DATA_KEYS)
        spec = item.get("data", "synthetic")
        if not isinstance(spec, str):
            problems.add(f"{where}.data", "give `synthetic` or a data YAML path (configs/data/)")
            continue
        config = None if spec == "synthetic" else spec
        if config is not None:
            problem = _check_data_yaml(config)
            if problem:
                problems.add(f"{where}.data", problem)
                continue
        label = item.get("label", "synthetic" if config is None else Path(config).stem)
        if not isinstance(label, str) or not label.strip():
            problems.add(f"{where}.label", "give a non-empty text")
            continue
        args = _args(problems, f"{where}.args", item.get("args"), (*owned, "--model", "--data", "--config"))
        entries.append(DataEntry(label=label, config=config, args=args))
    _check_labels(problems, "data", [d.label for d in entries])
    return entries


def _check_data_yaml(path: str) -> str:
    file = Path(path)
    if not file.is_file():
        return f"{path} does not exist (relative paths are read from the current folder, {Path.cwd()}); check the path"
    try:
        content = _read_yaml(file)
    except Exception as exc:  # noqa: BLE001
        return f"{path} is not readable YAML ({one_line(exc)})"
    if not isinstance(content, dict) or "class_path" not in content:
        return f"{path} has no top-level class_path: give a data YAML as in configs/data/ (the value of --data)"
    return ""


def _check_labels(problems: _Problems, key: str, labels: list[str]) -> None:
    seen: dict[str, str] = {}
    for label in labels:
        ident = cell_part(label)
        if ident in seen:
            same = "twice" if seen[ident] == label else f"and '{seen[ident]}' (the same folder name '{ident}')"
            problems.add(key, f"label '{label}' appears {same}: give each entry its own label")
        seen.setdefault(ident, label)


def _reference(problems: _Problems, value: Any, labels: list[str]) -> Reference | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.add("reference", "give a mapping with source, note, columns, values")
        return None
    _unknown_keys(problems, "reference", value, REFERENCE_KEYS)
    source = value.get("source")
    if not isinstance(source, str) or not source.strip():
        problems.add("reference.source", "say where the numbers come from (paper, table)")
        source = ""
    note = value.get("note") or ""
    columns: list[ReferenceColumn] = []
    for i, column in enumerate(value.get("columns") or []):
        where = f"reference.columns[{i}]"
        if not isinstance(column, dict) or not isinstance(column.get("name"), str):
            problems.add(where, "give a mapping with name (the paper's column), ours (our metric, optional), what")
            continue
        _unknown_keys(problems, where, column, COLUMN_KEYS)
        ours = column.get("ours")
        if ours is not None and (not isinstance(ours, str) or not re.fullmatch(r"[a-z0-9_]+", ours)):
            problems.add(f"{where}.ours", f"{ours!r}: give a metrics.json key without 'test/' (auc, loc_error, ...)")
            ours = None
        columns.append(ReferenceColumn(column["name"], ours, str(column.get("what") or "")))
    if not columns:
        problems.add("reference.columns", "give at least one column")
    names = {c.name for c in columns}
    values = value.get("values") or {}
    if not isinstance(values, dict):
        problems.add("reference.values", "give a mapping: model label -> {column name: number}")
        values = {}
    for label, row in values.items():
        where = f"reference.values.{label}"
        if label not in labels:
            close = difflib.get_close_matches(str(label), labels, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.add(where, f"'{label}' is not a model label of this config{hint}")
        if not isinstance(row, dict):
            problems.add(where, "give a mapping: column name -> number, [value, ci low, ci high] or null (NA)")
            continue
        for column, number in row.items():
            if column not in names:
                problems.add(where, f"column '{column}' is not in reference.columns ({', '.join(sorted(names))})")
            elif not _is_reference_value(number):
                problems.add(f"{where}.{column}", f"{number!r}: give a number, [value, ci low, ci high] or null")
    return Reference(
        source=" ".join(source.split()), note=" ".join(str(note).split()), columns=tuple(columns), values=values
    )


def _is_reference_value(value: Any) -> bool:
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    return value is None or number(value) or (isinstance(value, list) and len(value) == 3 and all(map(number, value)))


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# ================================================================================================ the grid
@dataclass(frozen=True)
class Cell:
    model: ModelEntry
    data: DataEntry
    seed: int
    fold: int | None
    id: str
    run_dir: Path
    command: tuple[str, ...]  # `bilatcf fit ...` without the resume option, as a user would type it
    config_hash: str


def cell_part(label: str) -> str:
    """A label as a folder-name part: runs of other characters than letters, digits, ``_ . -`` become ``-``."""
    return _SAFE.sub("-", label).strip("-") or "x"


def cell_id(model: str, data: str, seed: int, fold: int | None) -> str:
    return f"{cell_part(model)}__{cell_part(data)}__seed{seed}" + ("" if fold is None else f"__fold{fold}")


def cells(bench: Benchmark, runs: str | os.PathLike = DEFAULT_RUNS) -> list[Cell]:
    """Every cell of the grid, in table order: models, then data, seeds, folds."""
    out = []
    for model in bench.models:
        for data in bench.data:
            for seed in bench.seeds:
                for fold in bench.folds:
                    ident = cell_id(model.label, data.label, seed, fold)
                    run_dir = Path(runs) / bench.name / ident
                    command = fit_command(bench, model, data, seed, fold, run_dir)
                    out.append(Cell(model, data, seed, fold, ident, run_dir, command, config_hash(command)))
    return out


def fit_command(
    bench: Benchmark, model: ModelEntry, data: DataEntry, seed: int, fold: int | None, run_dir: Path
) -> tuple[str, ...]:
    """``bilatcf fit`` with, in this order (later options win): the model, the data, the common args, the data
    entry's args, the model entry's args, the model's required data options, then what the runner sets."""
    required = [arg for key, value in model.data_options for arg in (f"--data.{key}", _cli_value(value))]
    fold_args = [] if fold is None else ["--data.fold", str(fold)]
    return (
        "bilatcf",
        "fit",
        *model.selection(),
        *data.selection(),
        *bench.args,
        *data.args,
        *model.args,
        *required,
        "--seed_everything",
        str(seed),
        *fold_args,
        "--trainer.default_root_dir",
        str(run_dir),
        "--trainer.enable_progress_bar",
        "false",
    )


def _cli_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))
    return "null" if value is None else str(value)


def config_hash(command: Sequence[str]) -> str:
    """12 hex digits of SHA-256 over what defines a cell: its command without the run folder, plus the parsed content
    of every YAML file the command names (so an edited ablation YAML is a changed cell; comments are not)."""
    args = list(command)
    for flag in ("--trainer.default_root_dir", "--trainer.enable_progress_bar"):
        if flag in args:
            i = args.index(flag)
            del args[i : i + 2]
    files = {}
    for i, arg in enumerate(args[:-1]):
        if arg in ("--config", "--data") and args[i + 1].endswith((".yaml", ".yml")):
            path = Path(args[i + 1])
            files[args[i + 1]] = _read_yaml(path) if path.is_file() else None
    text = json.dumps({"command": args, "files": files}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------------------------ a cell's folder
def last_checkpoint(run_dir: Path) -> Path | None:
    """The cell's last checkpoint, where ``bilatcf fit --ckpt_path last`` looks for it (``checkpoints.find_checkpoint``:
    ``<root>/<logger>/<version>/checkpoints/last*.ckpt`` or ``<root>/checkpoints/last*.ckpt``)."""
    found = [*run_dir.glob("*/*/checkpoints/last*.ckpt"), *run_dir.glob("checkpoints/last*.ckpt")]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def metrics_file(run_dir: Path) -> Path | None:
    """The cell's ``metrics.json`` (the newest, if a run was started more than once)."""
    found = [*run_dir.glob("*/*/metrics.json"), *run_dir.glob("metrics.json")]
    return max(found, key=lambda p: (p.stat().st_mtime, str(p))) if found else None


def read_record(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / RECORD).read_text())
    except (OSError, ValueError):
        return {}


def write_record(cell: Cell, git: str) -> None:
    previous = read_record(cell.run_dir)
    record = {
        "cell": cell.id,
        "model": cell.model.model,
        "label": cell.model.label,
        "data": cell.data.label,
        "seed": cell.seed,
        "fold": cell.fold,
        "config_hash": cell.config_hash,
        "command": list(cell.command),
        "git": git,
        "attempts": int(previous.get("attempts", 0)) + 1,
    }
    cell.run_dir.mkdir(parents=True, exist_ok=True)
    (cell.run_dir / RECORD).write_text(json.dumps(record, indent=2) + "\n")


DONE, DONE_CSV, RESUME, NEW, CHANGED = "done", "done (csv)", "resume", "new", "changed"


def cell_state(cell: Cell, csv_rows: dict[str, dict[str, str]]) -> str:
    """``done`` (a metrics.json), ``done (csv)`` (no run folder, but a row of the results CSV with the same config
    hash), ``resume`` (a last checkpoint, no metrics), ``new``, or ``changed`` (the folder or CSV row was made by a
    different command: the config changed since)."""
    record = read_record(cell.run_dir)
    if record.get("config_hash") not in (None, cell.config_hash):
        return CHANGED
    if metrics_file(cell.run_dir) is not None:
        return DONE
    row = csv_rows.get(cell.id)
    if row is not None and last_checkpoint(cell.run_dir) is None:
        return DONE_CSV if row.get("config_hash") == cell.config_hash else CHANGED
    return RESUME if last_checkpoint(cell.run_dir) is not None else NEW


def run_command(cell: Cell) -> list[str]:
    """The command a cell runs now: its fit command, plus ``--ckpt_path last`` when it has a last checkpoint."""
    command = list(cell.command)
    if last_checkpoint(cell.run_dir) is not None:
        command += ["--ckpt_path", "last"]
    return command


def git_revision(cwd: str | os.PathLike = ".") -> str:
    """The short commit, with ``+dirty`` when tracked files of bilatcf/ or configs/ have uncommitted changes."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    sha = git("rev-parse", "--short", "HEAD")
    if not sha:
        return "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "bilatcf", "configs")
    return sha + ("+dirty" if dirty else "")


# ================================================================================================ running a cell
class CellJob:
    """Runs one cell: ``python -m bilatcf.cli fit ...`` in a subprocess, its output appended to the cell's log.

    The resume option is decided when the job starts (on the machine that runs it), so a SLURM job requeued after a
    timeout or preemption (submitit calls :meth:`checkpoint`) resumes from the cell's last checkpoint. A cell that
    already has its metrics.json is not run again. Returns the fit's exit status.
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None

    def __call__(self, spec: dict[str, Any]) -> int:
        run_dir = Path(spec["run_dir"])
        if metrics_file(run_dir) is not None:
            return 0
        command = list(spec["command"])
        if last_checkpoint(run_dir) is not None:
            command += ["--ckpt_path", "last"]
        argv = [*spec.get("prefix", FIT_PREFIX), *command[1:]]
        env = {**os.environ, **spec.get("env", {})}
        rank = int(os.environ.get("SLURM_PROCID", "0") or 0) if spec.get("ranked") else 0
        log = run_dir / (LOG if rank == 0 else f"benchmark.rank{rank}.log")
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as handle:
            handle.write(f"$ {shlex.join(command)}\n")
            handle.flush()
            self._process = subprocess.Popen(
                argv, cwd=spec["cwd"], env=env, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            try:
                return self._process.wait()
            finally:
                if self._process.poll() is None:
                    self._process.terminate()
                    self._process.wait()

    def stop(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's hook before a timeout or preemption: requeue the same job (it resumes from last.ckpt)."""
        import submitit

        self.stop()
        return submitit.helpers.DelayedSubmission(CellJob(), *args, **kwargs)


def job_spec(cell: Cell, env: dict[str, str], ranked: bool = False) -> dict[str, Any]:
    return {
        "cell": cell.id,
        "command": list(cell.command),
        "prefix": list(FIT_PREFIX),
        "run_dir": str(cell.run_dir.resolve()),
        "cwd": os.getcwd(),
        "env": env,
        "ranked": ranked,
    }


# ================================================================================================ launchers
@dataclass
class Outcome:
    cell: Cell
    ok: bool
    seconds: float
    message: str = ""


class Launcher:
    """Runs cells and reports each as it ends; ``stop`` ends what is still running."""

    def run(self, cells: list[Cell], report: Callable[[Outcome], None], started: Callable[[Cell], None]) -> None:
        raise NotImplementedError


class SubprocessLauncher(Launcher):
    """``jobs`` cells at a time on this machine, each a subprocess; with jobs > 1 each gets cpu_count // jobs threads
    (``OMP_NUM_THREADS``), as ``benchmarks/quality.py --jobs`` does."""

    def __init__(self, jobs: int) -> None:
        self.jobs = max(1, jobs)
        self._jobs: list[CellJob] = []
        self._lock = threading.Lock()

    def run(self, cells, report, started) -> None:
        threads = None if self.jobs <= 1 else max(1, (os.cpu_count() or 1) // self.jobs)
        env = {} if threads is None else {"OMP_NUM_THREADS": str(threads)}

        def one(cell: Cell) -> Outcome:
            job = CellJob()
            with self._lock:
                self._jobs.append(job)
            started(cell)
            start = time.perf_counter()
            code = job(job_spec(cell, env))
            seconds = time.perf_counter() - start
            return Outcome(cell, code == 0 and metrics_file(cell.run_dir) is not None, seconds, _failure(cell, code))

        pool = ThreadPoolExecutor(self.jobs)
        try:
            futures = [pool.submit(one, cell) for cell in cells]
            remaining = set(futures)
            while remaining:
                done, remaining = wait(remaining, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=futures.index):
                    report(future.result())
        except BaseException:
            self.stop()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)

    def stop(self) -> None:
        with self._lock:
            for job in self._jobs:
                job.stop()


def _failure(cell: Cell, code: int | None) -> str:
    if code == 0 and metrics_file(cell.run_dir) is None:
        reason = "the run ended without writing metrics.json"
    else:
        reason = f"exit status {code}"
    return f"{reason}; its output: {cell.run_dir / LOG}" + _log_tail(cell.run_dir / LOG)


def _log_tail(path: Path, lines: int = 4) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
        tail = [line for line in text if line.strip() and not line.startswith("$ bilatcf ")][-lines:]
    except OSError:
        return ""
    return "".join(f"\n      {line}" for line in tail)


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    time: int = 240  # minutes per cell
    gpus: int = 0  # per node
    nodes: int = 1
    cpus_per_task: int | None = None
    mem_gb: int | None = None
    account: str | None = None


def import_submitit():
    try:
        import submitit
    except ImportError:
        raise MissingDependencyError("submitit", "--launcher local|slurm", extra="slurm") from None
    return submitit


def make_executor(cluster: str, folder: Path, jobs: int, name: str, options: SlurmOptions):
    """A submitit executor: ``local`` (its local executor: a process per job on this machine) or ``slurm`` (sbatch, a
    job array with ``jobs`` tasks at a time). With several GPUs a cell runs one task per GPU (``srun``), which is how
    Lightning's SLURM environment expects DDP: pass ``--trainer.devices N`` (and ``--trainer.num_nodes``) in args."""
    submitit = import_submitit()
    try:
        executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    except RuntimeError as exc:  # no srun on PATH: not a SLURM machine
        raise ConfigError(
            f"--launcher {cluster}: {one_line(exc)} Run the command on a machine of the cluster (a login node), or use "
            "--launcher subprocess or local to run the cells here."
        ) from None
    tasks = max(1, options.gpus)
    parameters: dict[str, Any] = {
        "name": f"bilatcf-{name}",
        "timeout_min": options.time,
        "gpus_per_node": options.gpus,
        "tasks_per_node": tasks,
        "nodes": options.nodes,
    }
    if cluster == "slurm":
        parameters["slurm_array_parallelism"] = max(1, jobs)
        if options.partition:
            parameters["slurm_partition"] = options.partition
        if options.cpus_per_task:
            parameters["cpus_per_task"] = options.cpus_per_task
        if options.mem_gb:
            parameters["mem_gb"] = options.mem_gb
        if options.account:
            parameters["slurm_account"] = options.account
    executor.update_parameters(**parameters)
    return executor


class SubmititLauncher(Launcher):
    """Cells as submitit jobs: ``slurm`` submits the whole grid as one job array (``jobs`` array tasks at a time);
    ``local`` keeps ``jobs`` processes running on this machine. The runner waits for the jobs; if it is stopped, SLURM
    jobs go on, and the same command later collects the finished cells (and resumes the others)."""

    def __init__(
        self, cluster: str, folder: Path, jobs: int, name: str, options: SlurmOptions, poll: float | None = None
    ) -> None:
        self.cluster = cluster
        self.folder = folder
        self.jobs = jobs  # cells at once; 0: all of them
        self.name = name
        self.options = options
        self.poll = poll if poll is not None else (30.0 if cluster == "slurm" else 1.0)

    def run(self, cells, report, started) -> None:
        parallel = self.jobs if self.jobs >= 1 else len(cells)
        executor = make_executor(self.cluster, self.folder, parallel, self.name, self.options)
        env = {"OMP_NUM_THREADS": str(self.options.cpus_per_task)} if self.options.cpus_per_task else {}
        ranked = self.options.gpus > 1 or self.options.nodes > 1
        specs = {cell.id: job_spec(cell, env, ranked) for cell in cells}
        waiting = list(cells)
        running: list[tuple[Cell, Any, float]] = []
        if self.cluster == "slurm":  # one array job for the whole grid
            with executor.batch():
                jobs = [executor.submit(CellJob(), specs[cell.id]) for cell in waiting]
            running = [(cell, job, time.perf_counter()) for cell, job in zip(waiting, jobs)]
            waiting = []
            for cell in [entry[0] for entry in running]:
                started(cell)
            print(f"submitted a job array of {len(running)} cells: {running[0][1].job_id.split('_')[0]}", flush=True)
        while waiting or running:
            while waiting and len(running) < parallel:
                cell = waiting.pop(0)
                job = executor.submit(CellJob(), specs[cell.id])
                started(cell)
                running.append((cell, job, time.perf_counter()))
            still = []
            for cell, job, start in running:
                if not job.done():
                    still.append((cell, job, start))
                    continue
                try:
                    code = job.result()
                    message = _failure(cell, code)
                except Exception as exc:  # noqa: BLE001 - the job died: say where its log is
                    code, message = None, f"the job failed ({one_line(exc)[:300]}); submitit log: {job.paths.stderr}"
                ok = code == 0 and metrics_file(cell.run_dir) is not None
                report(Outcome(cell, ok, time.perf_counter() - start, message))
            running = still
            if waiting or running:
                time.sleep(self.poll)


# ================================================================================================ results
def results_paths(results: str | os.PathLike, name: str) -> tuple[Path, Path]:
    folder = Path(results)
    return folder / f"leaderboard_{name}.csv", folder / f"leaderboard_{name}.md"


def read_csv(path: Path) -> list[dict[str, str]]:
    """A leaderboard CSV's rows, checked: every row names its cell, and a metric column (``test/*``, the timings)
    holds a number or nothing (what the runner writes), so a hand edit can never pass for a missing value."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is not None and "cell" not in reader.fieldnames:
            raise ConfigError(
                f"{path}: the header has no `cell` column, so this is not a leaderboard CSV the runner wrote; "
                "move it out of the results folder, or delete it to run its cells again."
            )
        rows = list(reader)
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        for key, value in row.items():
            numeric = key is not None and (key.startswith("test/") or key in ("train_seconds", "pairs_per_second"))
            if key is None or (numeric and value not in ("", None) and not _parses(value)):
                what = "more fields than the header" if key is None else f"`{key}` holds {value!r}, not a number"
                raise ConfigError(
                    f"{path}, line {line} (cell {row.get('cell') or '?'}): {what}. Restore the value the run "
                    "wrote (its metrics.json), leave it empty, or delete the row to run the cell again."
                )
    return rows


def _parses(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def cell_row(cell: Cell) -> dict[str, str] | None:
    """The CSV row of a finished cell: its identity, every scalar of its metrics.json, its record's git and attempts."""
    path = metrics_file(cell.run_dir)
    if path is None:
        return None
    metrics = json.loads(path.read_text())
    record = read_record(cell.run_dir)
    row = {
        "cell": cell.id,
        "model": str(metrics.get("model") or cell.model.model),
        "label": cell.model.label,
        "data": cell.data.label,
        "seed": str(cell.seed),
        "fold": "" if cell.fold is None else str(cell.fold),
    }
    for key, value in metrics.items():
        if key not in _IDENTITY_KEYS and not isinstance(value, (dict, list)):
            row[key] = "" if value is None else str(value)
    row["attempts"] = str(record.get("attempts", ""))
    row["git"] = str(record.get("git", ""))
    row["config_hash"] = cell.config_hash
    return row


def shared_rows(
    results: str | os.PathLike, name: str, grid: list[Cell], own: dict[str, dict[str, str]]
) -> dict[str, dict[str, str]]:
    """Rows that the other leaderboards in ``results`` hold for cells of this grid that have no result of their own.

    A cell's config hash covers its whole ``bilatcf fit`` command (its run folder aside) and the YAMLs the command
    reads, so the same hash in another leaderboard's CSV is the same run: its row stands here too, with this grid's
    cell id, model label and data label, and ``shared_from`` naming the leaderboard it was run for. A cell with a row,
    a metrics.json or a last checkpoint of its own keeps them. Files are read in name order; the first row of a hash
    wins. Keyed by this grid's cell id.
    """
    wanted = {
        cell.config_hash: cell
        for cell in grid
        if cell.id not in own and metrics_file(cell.run_dir) is None and last_checkpoint(cell.run_dir) is None
    }
    found: dict[str, dict[str, str]] = {}
    for path in sorted(Path(results).glob("leaderboard_*.csv")) if wanted else []:
        source = path.stem.removeprefix("leaderboard_")
        if source == name:
            continue
        try:
            rows = read_csv(path)
        except (OSError, UnicodeDecodeError, csv.Error, ConfigError) as exc:
            print(f"not shared from {path.name}: {one_line(exc)[:300]}")  # not a CSV this runner wrote: skip it
            continue
        for row in rows:
            cell = wanted.get(row.get("config_hash") or "")
            if cell is not None and cell.id not in found:
                identity = {"cell": cell.id, "label": cell.model.label, "data": cell.data.label}
                found[cell.id] = {**row, **identity, SHARED_COLUMN: row.get(SHARED_COLUMN) or source}
    return found


def collect_rows(grid: list[Cell], csv_rows: dict[str, dict[str, str]]) -> list[dict[str, str]]:
    """The rows of every finished cell, in grid order: from its run folder, or kept from the CSV (``done (csv)``)."""
    rows = []
    for cell in grid:
        row = cell_row(cell)
        if row is None:
            kept = csv_rows.get(cell.id)
            if kept is not None and kept.get("config_hash") == cell.config_hash:
                row = kept
        if row is not None:
            rows.append(row)
    return rows


def csv_columns(rows: list[dict[str, str]]) -> list[str]:
    """The lead columns, the metrics (other keys of metrics.json, then ``test/*``, each sorted), the tail columns."""
    keys = {key for row in rows for key in row} - set(LEAD_COLUMNS) - set(TAIL_COLUMNS) - {SHARED_COLUMN}
    other = sorted(k for k in keys if not k.startswith("test/"))
    tests = sorted(k for k in keys if k.startswith("test/"))
    shared = [SHARED_COLUMN] if any(row.get(SHARED_COLUMN) for row in rows) else []
    return [*LEAD_COLUMNS, *other, *tests, *TAIL_COLUMNS, *shared]


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=csv_columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: row.get(key, "") for key in writer.fieldnames} for row in rows)
    _write(path, text.getvalue())


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


# ------------------------------------------------------------------------------------------------ rendering
def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _values(rows: list[dict[str, str]], key: str) -> list[float]:
    return [v for v in (_number(row.get(key)) for row in rows) if v is not None]


def _mean_sd(values: list[float], digits: int = 3) -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _cell_text(rows: list[dict[str, str]], key: str) -> str:
    """mean ± sd of ``key`` over the rows that have it, with ``(n=k)`` when only k of the entry's n rows do (a cell
    that ran before the metric existed, say), so the n column never overstates a value's cells."""
    values = _values(rows, key)
    text = _mean_sd(values, 0 if key == "train_seconds" else 3)
    if key in CI_METRICS and text != "–":
        low, high = _values(rows, f"{key}_ci_low"), _values(rows, f"{key}_ci_high")
        if low and high:
            text += f" [{statistics.fmean(low):.3f}, {statistics.fmean(high):.3f}]"
    if values and len(values) < len(rows):
        text += f" (n={len(values)})"
    return text


def _has(row: dict[str, str], keys: list[str]) -> bool:
    return any(_number(row.get(key)) is not None for key in keys)


def _header(key: str) -> str:
    return "train s" if key == "train_seconds" else key.removeprefix("test/")


def _table(labels: list[str], groups: dict[str, list[dict[str, str]]], keys: list[str]) -> list[str]:
    lines = [
        "| model | n | " + " | ".join(_header(k) for k in keys) + " |",
        "|---|---:|" + "---:|" * len(keys),
    ]
    for label in labels:
        rows = groups.get(label, [])
        if rows:
            lines.append(f"| {label} | {len(rows)} | " + " | ".join(_cell_text(rows, k) for k in keys) + " |")
    return lines


def render(bench: Benchmark, rows: list[dict[str, str]], total: int) -> str:
    """The leaderboard markdown, from the CSV rows alone (and the config's labels, args and reference): no clock, no
    machine, no path outside the repository, so the same rows give the same bytes."""
    labels = [m.label for m in bench.models]
    out = [f"# Leaderboard `{bench.name}`", ""]
    if bench.description:
        out += [bench.description, ""]
    gits: dict[str, int] = {}
    for row in rows:
        gits[row.get("git") or "unknown"] = gits.get(row.get("git") or "unknown", 0) + 1
    git_text = ", ".join(f"{sha} ({n} cells)" for sha, n in sorted(gits.items())) if gits else "–"
    sources: dict[str, int] = {}
    for row in rows:
        if row.get(SHARED_COLUMN):
            sources[row[SHARED_COLUMN]] = sources.get(row[SHARED_COLUMN], 0) + 1
    shared_text = (
        " Cells run for another leaderboard with the same command (config hash): "
        + ", ".join(f"{n} from `{source}`" for source, n in sorted(sources.items()))
        + "."
        if sources
        else ""
    )
    folds = "" if bench.folds == (None,) else f"; folds {', '.join(map(str, bench.folds))}"
    out += [
        f"Produced by `bilatcf benchmark --config {_shown_path(bench.path)}` and rendered from "
        f"`leaderboard_{bench.name}.csv` (one row per cell); never edited by hand. {len(rows)} of {total} cells "
        f"finished; seeds {', '.join(map(str, bench.seeds))}{folds}; git {git_text}.{shared_text}",
        "",
        "Each entry is the mean ± sd over the entry's n cells (seeds"
        + (" and folds" if folds else "")
        + "); AUC columns add, in brackets, the mean of the cells' 95 % bootstrap CI bounds; `train s` is the wall "
        "time of training (validation included; for a resumed cell, the part after the resume).",
        "",
    ]
    if bench.args:
        out += [f"Common arguments of every cell: `{shlex.join(bench.args)}`.", ""]
    for data in bench.data:
        data_rows = [row for row in rows if row.get("data") == data.label]
        groups: dict[str, list[dict[str, str]]] = {}
        for row in data_rows:
            groups.setdefault(row["label"], []).append(row)
        how = " ".join(filter(None, [f"--data {data.config}" if data.config else "", shlex.join(data.args)]))
        out += [f"## {data.label}" + (f" (`{how}`)" if how else " (the synthetic default)"), ""]
        if not data_rows:
            out += ["No finished cell yet.", ""]
            continue
        here = {key for row in data_rows for key, value in row.items() if _number(value) is not None}
        main = [k for k in MAIN_METRICS if k in here]
        main += ["train_seconds"] if "train_seconds" in here else []
        out += [*_table(labels, groups, main), ""]
        extra = sorted(
            k
            for k in here
            if k.startswith(("test/expl_", "test/cf_")) and not k.endswith(("_std", "_ci_low", "_ci_high"))
        )
        if extra:
            out += [f"Explanation and counterfactual metrics ({data.label}; models that have them):", ""]
            with_extra = [label for label in labels if any(_has(row, extra) for row in groups.get(label, []))]
            out += [*_table(with_extra, groups, extra), ""]
    if bench.reference is not None:
        out += _render_reference(bench, rows)
    if bench.missing:
        out += ["Not in the grid (left out with `--skip-missing`):", ""]
        out += [f"- `{m.label}`: {m.short}" for m in bench.missing] + [""]
    out += ["## Cells", "", "| model | how it is run |", "|---|---|"]
    for model in bench.models:
        how = shlex.join(
            model.selection()
            + list(model.args)
            + [a for k, v in model.data_options for a in (f"--data.{k}", _cli_value(v))]
        )
        out.append(f"| {model.label} | `{how}` |")
    return "\n".join(out).rstrip("\n") + "\n"


def _shown_path(path: str) -> str:
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return Path(path).name


def _render_reference(bench: Benchmark, rows: list[dict[str, str]]) -> list[str]:
    reference = bench.reference
    assert reference is not None
    ours = list(dict.fromkeys(c.ours for c in reference.columns if c.ours))
    heads = [f"ours: {metric} ({data.label})" for metric in ours for data in bench.data]
    heads += [f"paper: {column.name}" for column in reference.columns]
    lines = [
        "## Published numbers (the papers' own data, not these runs)",
        "",
        f"{reference.source}."
        + (f" {reference.note}" if reference.note else "")
        + " The paper's columns were measured on its datasets, at its resolution and training budget; ours on the "
        "data above: put side by side to compare the ranking of the methods, not the values.",
        "",
        "| model | " + " | ".join(heads) + " |",
        "|---|" + "---:|" * len(heads),
    ]
    for label in bench.labels:
        if label not in reference.values:
            continue
        cells_text = []
        for metric in ours:
            for data in bench.data:
                group = [row for row in rows if row.get("label") == label and row.get("data") == data.label]
                cells_text.append(_cell_text(group, f"test/{metric}") if group else "–")
        paper = reference.values[label]
        cells_text += [_paper_value(paper[c.name]) if c.name in paper else "–" for c in reference.columns]
        lines.append(f"| {label} | " + " | ".join(cells_text) + " |")
    lines.append("")
    lines += ["Paper columns: " + "; ".join(f"{c.name}: {c.what}" for c in reference.columns) + ".", ""]
    return lines


def _paper_value(value: Any) -> str:
    if value is None:
        return "NA"
    if isinstance(value, list):
        return f"{_paper_number(value[0])} ({_paper_number(value[1])}–{_paper_number(value[2])})"
    return _paper_number(value)


def _paper_number(value: float) -> str:
    """The published number with at least 3 decimals, never fewer than the config gives (0.8721 stays 0.8721)."""
    text = repr(float(value))
    decimals = len(text.split(".")[1]) if "." in text and "e" not in text else 3
    return f"{value:.{max(3, decimals)}f}"


def write_results(
    bench: Benchmark, grid: list[Cell], results: str | os.PathLike, csv_rows: dict[str, dict[str, str]]
) -> tuple[Path, Path, int]:
    csv_path, md_path = results_paths(results, bench.name)
    rows = collect_rows(grid, csv_rows)
    write_csv(csv_path, rows)
    _write(md_path, render(bench, read_csv(csv_path), len(grid)))  # the .md comes from the CSV alone
    return csv_path, md_path, len(rows)


# ================================================================================================ progress
GLYPHS = {DONE: "✓", DONE_CSV: "✓", "running": "▶", "failed": "✗", NEW: "·", RESUME: "↻", CHANGED: "!"}


class Progress:
    """The grid's progress: a live table (models × data, a mark per seed/fold) on a terminal, and on any output one
    line per finished cell."""

    def __init__(
        self,
        bench: Benchmark,
        grid: list[Cell],
        states: dict[str, str],
        interactive: bool | None = None,
        to_run: int | None = None,
    ):
        self.bench = bench
        self.grid = grid
        self.states = dict(states)
        self.total = len(grid)
        self.finished = 0
        self.to_run = sum(1 for s in states.values() if s in (NEW, RESUME)) if to_run is None else to_run
        self.start = time.perf_counter()
        self._live = None
        self._console = None
        try:
            from rich.console import Console

            self._console = Console()
            self.interactive = self._console.is_terminal if interactive is None else interactive
        except ImportError:  # rich is a dependency; without it the progress is plain lines
            self.interactive = False

    def __enter__(self) -> Progress:
        if self.interactive and self._console is not None:
            from rich.live import Live

            self._live = Live(console=self._console, get_renderable=self._table, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def line(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            print(text, flush=True)

    def started(self, cell: Cell) -> None:
        self.states[cell.id] = "running"

    def finished_cell(self, outcome: Outcome) -> None:
        self.finished += 1
        self.states[outcome.cell.id] = DONE if outcome.ok else "failed"
        head = f"[{self.finished}/{self.to_run}] {outcome.cell.id}:"
        if outcome.ok:
            row = cell_row(outcome.cell) or {}
            scores = ", ".join(
                f"{_header(k)} {float(row[k]):.3f}" for k in ("test/auc", "test/loc_error") if _has(row, [k])
            )
            self.line(f"{head} done in {outcome.seconds:.0f} s" + (f" ({scores})" if scores else ""))
        else:
            self.line(f"{head} FAILED after {outcome.seconds:.0f} s: {outcome.message}")

    def _table(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        counts: dict[str, int] = {}
        for state in self.states.values():
            counts[state] = counts.get(state, 0) + 1
        elapsed = time.strftime("%H:%M:%S", time.gmtime(time.perf_counter() - self.start))
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        table = Table(title=f"benchmark {self.bench.name}", title_justify="left")
        table.add_column("model")
        for data in self.bench.data:
            table.add_column(data.label)
        for model in self.bench.models:
            marks = []
            for data in self.bench.data:
                ids = [c.id for c in self.grid if c.model.label == model.label and c.data.label == data.label]
                marks.append("".join(GLYPHS.get(self.states.get(i, NEW), "?") for i in ids))
            table.add_row(model.label, *marks)
        legend = "✓ done  ▶ running  ↻ to resume  · to run  ✗ failed"
        return Group(table, Text(f"{summary}; {elapsed}   ({legend})"))


# ================================================================================================ the command
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bilatcf benchmark",
        description="Run a leaderboard: every (model, data, seed, fold) cell of a benchmark config as a `bilatcf fit` "
        "run in its own folder (finished cells are skipped, half-finished ones resume from their last checkpoint), "
        "then write leaderboard_<name>.csv and render leaderboard_<name>.md from it. Config format: " + DOCS + ".",
    )
    parser.add_argument("--config", required=True, help="the benchmark YAML (configs/benchmark/<name>.yaml)")
    parser.add_argument(
        "--dry-run", "--dry_run", action="store_true", help="print the cells and their commands; run nothing"
    )
    parser.add_argument(
        "--render-only",
        "--render_only",
        action="store_true",
        help="render leaderboard_<name>.md from the existing CSV; train nothing",
    )
    parser.add_argument("--jobs", type=int, default=None, help="cells run at once (default: the config's jobs, else 1)")
    parser.add_argument(
        "--runs", default=DEFAULT_RUNS, help=f"folder of the cells' run folders (default {DEFAULT_RUNS})"
    )
    parser.add_argument(
        "--results", default=DEFAULT_RESULTS, help=f"folder of the CSV and the .md (default {DEFAULT_RESULTS})"
    )
    parser.add_argument(
        "--skip-missing",
        "--skip_missing",
        action="store_true",
        help="leave out (and list in the .md) the model entries whose model or YAML does not exist yet",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="LABEL",
        default=None,
        help="run only the cells of these model labels (as the table names them); the others are left as they are "
        "and the leaderboard shows every finished cell",
    )
    parser.add_argument(
        "--only-data",
        "--only_data",
        nargs="+",
        metavar="LABEL",
        default=None,
        help="run only the cells of these data labels (as the table names them); combines with --only and --seeds",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        metavar="SEED",
        default=None,
        help="run only the cells of these seeds (some of the config's seeds, e.g. one seed of every model first); "
        "combines with --only and --only-data",
    )
    parser.add_argument(
        "--rerun-changed",
        "--rerun_changed",
        action="store_true",
        help="cells whose command changed since they ran: delete their run folders and run them again",
    )
    parser.add_argument(
        "--no-shared",
        "--no_shared",
        action="store_true",
        help="run every cell here, even those another leaderboard in --results already ran with the same command "
        "(by default their rows are taken over, marked shared_from)",
    )
    parser.add_argument(
        "--launcher",
        choices=("subprocess", "local", "slurm"),
        default="subprocess",
        help="subprocess: on this machine (default); local: submitit's local executor; slurm: a SLURM job array "
        "through submitit (pip install 'bilatcf[slurm]')",
    )
    slurm = parser.add_argument_group("SLURM (--launcher slurm; --time and --gpus also apply to local)")
    slurm.add_argument("--partition", default=None)
    slurm.add_argument("--time", type=int, default=240, help="minutes per cell (default 240)")
    slurm.add_argument("--gpus", type=int, default=0, help="GPUs per node for each cell (default 0)")
    slurm.add_argument("--nodes", type=int, default=1, help="nodes per cell (default 1)")
    slurm.add_argument("--cpus-per-task", "--cpus_per_task", type=int, default=None)
    slurm.add_argument("--mem-gb", "--mem_gb", type=int, default=None)
    slurm.add_argument("--account", default=None)
    return parser


def run_benchmark(argv: list[str]) -> int:
    """``bilatcf benchmark``; returns the exit status (1 when a cell failed)."""
    ns = build_parser().parse_args(argv)
    for key in ("jobs", "time", "nodes", "cpus_per_task", "mem_gb"):
        value = getattr(ns, key)
        if value is not None and value < 1:
            raise ConfigError(f"--{key.replace('_', '-')} {value}: give an integer >= 1.")
    if ns.gpus < 0:
        raise ConfigError(f"--gpus {ns.gpus}: give the GPUs per node of a cell, 0 or more.")
    bench = load_config(ns.config, skip_missing=ns.skip_missing or ns.render_only)
    csv_path, md_path = results_paths(ns.results, bench.name)
    grid = cells(bench, ns.runs)
    filters = (  # flag, its values, the cell's value it tests, the config's values, what an unknown value is
        ("--only", ns.only, lambda cell: cell.model.label, [model.label for model in bench.models],
         "no model entry of {} has this label; its labels are"),
        ("--only-data", ns.only_data, lambda cell: cell.data.label, [data.label for data in bench.data],
         "no data entry of {} has this label; its labels are"),
        ("--seeds", ns.seeds, lambda cell: cell.seed, list(bench.seeds), "{} has no such seed; its seeds are"),
    )  # fmt: skip
    filters = tuple(entry for entry in filters if entry[1])  # the filters given
    for flag, values, _, choices, problem in filters:
        unknown = [str(value) for value in values if value not in choices]
        if unknown:
            raise ConfigError(
                f"{flag} {' '.join(unknown)}: {problem.format(bench.path)} {', '.join(map(str, choices))}."
            )

    def selected(cell: Cell) -> bool:
        return all(key(cell) in values for _, values, key, _, _ in filters)

    if ns.render_only:
        if not csv_path.is_file():
            raise ConfigError(
                f"--render-only: {csv_path} does not exist yet; run the benchmark first (or check --results)."
            )
        _write(md_path, render(bench, read_csv(csv_path), len(grid)))
        print(f"wrote {md_path}")
        return 0
    for missing in bench.missing:
        print(f"left out: {missing.label}: {missing.reason}")
    csv_rows = {row["cell"]: row for row in read_csv(csv_path)} if csv_path.is_file() else {}
    if not ns.no_shared:
        csv_rows.update(shared_rows(ns.results, bench.name, grid, csv_rows))
    states = {cell.id: cell_state(cell, csv_rows) for cell in grid}
    if ns.dry_run:
        return _dry_run(bench, grid, states, csv_rows)
    changed = [cell for cell in grid if states[cell.id] == CHANGED and selected(cell)]
    if changed and not ns.rerun_changed:
        shown = "\n".join(f"  - {cell.run_dir}" for cell in changed[:10])
        more = f"\n  ... and {len(changed) - 10} more" if len(changed) > 10 else ""
        raise ConfigError(
            f"{len(changed)} cell(s) of {bench.path} ran with another command than the config gives now (their "
            f"config hash differs):\n{shown}{more}\nRevert the change, give the leaderboard a new name, or pass "
            "--rerun-changed to delete these cells' results and run them again."
        )
    for cell in changed:
        shutil.rmtree(cell.run_dir, ignore_errors=True)
        csv_rows.pop(cell.id, None)
        states[cell.id] = NEW
    todo = [cell for cell in grid if states[cell.id] in (NEW, RESUME) and selected(cell)]
    jobs = ns.jobs or bench.jobs
    counts = {state: sum(1 for s in states.values() if s == state) for state in (DONE, DONE_CSV, RESUME, NEW)}
    chosen = {state: sum(1 for cell in todo if states[cell.id] == state) for state in (RESUME, NEW)}
    left = counts[RESUME] + counts[NEW] - len(todo)
    print(
        f"benchmark {bench.name}: {len(grid)} cells; {counts[DONE] + counts[DONE_CSV]} done, {chosen[RESUME]} to "
        f"resume, {chosen[NEW]} to run"
        + (f" ({left} more outside {' and '.join(entry[0] for entry in filters)})" if left else "")
        + "; "
        + ("as one SLURM job array" if ns.launcher == "slurm" and ns.jobs is None else f"{jobs} at a time")
        + f" ({ns.launcher})",
        flush=True,
    )
    git = git_revision()
    failed: list[Outcome] = []
    if todo:
        for cell in todo:
            write_record(cell, git)
        launcher = _launcher(ns, bench, jobs)
        with Progress(bench, grid, states, to_run=len(todo)) as progress:

            def report(outcome: Outcome) -> None:
                progress.finished_cell(outcome)
                if not outcome.ok:
                    failed.append(outcome)
                write_results(bench, grid, ns.results, csv_rows)

            try:
                launcher.run(todo, report, progress.started)
            except KeyboardInterrupt:
                progress.line("interrupted: finished cells are kept; the same command resumes the others")
                write_results(bench, grid, ns.results, csv_rows)
                return 130
    csv_path, md_path, finished = write_results(bench, grid, ns.results, csv_rows)
    print(f"wrote {csv_path} and {md_path} ({finished} of {len(grid)} cells)")
    if failed:
        listed = "\n".join(f"  - {o.cell.id}: {o.message}" for o in failed)
        print(
            f"{len(failed)} cell(s) failed:\n{listed}\nFix the cause and run the same command again: finished cells "
            "are skipped.",
            file=sys.stderr,
        )
        return 1
    return 0


def _launcher(ns: argparse.Namespace, bench: Benchmark, jobs: int) -> Launcher:
    if ns.launcher == "subprocess":
        return SubprocessLauncher(jobs)
    options = SlurmOptions(
        partition=ns.partition,
        time=ns.time,
        gpus=ns.gpus,
        nodes=ns.nodes,
        cpus_per_task=ns.cpus_per_task,
        mem_gb=ns.mem_gb,
        account=ns.account,
    )
    import_submitit()
    if ns.launcher == "slurm" and ns.jobs is None:
        jobs = 0  # every cell's array task may run at once: the scheduler decides
    return SubmititLauncher(ns.launcher, Path(ns.runs) / bench.name / "_submitit", jobs, bench.name, options)


def _dry_run(bench: Benchmark, grid: list[Cell], states: dict[str, str], csv_rows: dict[str, dict[str, str]]) -> int:
    for cell in grid:
        state = states[cell.id]
        command = run_command(cell) if state in (NEW, RESUME) else list(cell.command)
        source = csv_rows.get(cell.id, {}).get(SHARED_COLUMN) if state == DONE_CSV else None
        shown = f"{state}, shared from {source}" if source else state
        print(f"{cell.id}  [{shown}; config {cell.config_hash}]\n    {shlex.join(command)}")
    counts = ", ".join(
        f"{sum(1 for s in states.values() if s == k)} {k}" for k in (DONE, DONE_CSV, RESUME, NEW, CHANGED)
    )
    print(f"{len(grid)} cells of {bench.name}: {counts}")
    return 0
