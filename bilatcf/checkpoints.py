"""Checkpoints of bilatcf runs: what they hold, how a run's checkpoint is found, and how a file is read and checked.

* Every checkpoint carries ``bilatcf_model`` (the registry name) and ``bilatcf_data`` (class path and init args of the
  DataModule it was trained on; :func:`add_run_metadata`). ``bilatcf test|predict|validate --ckpt_path P`` use that
  data by default, and refuse data the model cannot be evaluated on (:func:`check_data_matches`).
* ``best-epoch=N.ckpt`` (``ModelCheckpoint`` on ``val/auc``) holds the weights only: it is for testing and prediction.
  ``last.ckpt`` (:class:`LastCheckpoint`) is the full training state at the end of the last completed epoch: it is what
  ``bilatcf fit --ckpt_path last`` resumes from.
* :func:`read_checkpoint` never runs code from a file (``torch.load(weights_only=True)``), so a foreign or damaged file
  is refused with a message, never unpickled.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytorch_lightning.callbacks import ModelCheckpoint

from bilatcf.errors import ConfigError

#: Lightning's ``ckpt_path`` keywords, resolved by :func:`find_checkpoint` to a file of a previous run.
KEYWORDS = ("last", "best", "hpc")
#: DataModule options a checkpoint's model must be evaluated with (the value it was trained with).
MATCHED_DATA_OPTIONS = ("image_size", "task", "four_view")
_WHERE = "Runs keep their checkpoints in <run dir>/checkpoints/ (best-epoch=N.ckpt, last.ckpt)"


class LastCheckpoint(ModelCheckpoint):
    """Writes ``last.ckpt`` at the end of every training epoch and at the end of the run: the state to resume from.

    ``ModelCheckpoint(monitor=..., save_last=True)`` refreshes ``last.ckpt`` only when it saves a new best checkpoint
    (Lightning >= 2.3), so after epochs without improvement it holds an old epoch. This callback monitors nothing and
    overwrites one file, whatever the Lightning version; its state makes a resumed run overwrite the same file.

    Args:
        dirpath: folder of the file (default: ``<run dir>/checkpoints``).
        filename: file name without ``.ckpt``.
    """

    def __init__(self, dirpath: str | None = None, filename: str = "last") -> None:
        super().__init__(dirpath=dirpath, filename=filename, monitor=None, save_top_k=1, save_last=False)

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        # A run that stops inside an epoch (max_steps) ends with its final state too.
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))


# ---------------------------------------------------------------------------------------------------------- writing
def add_run_metadata(module: Any, checkpoint: dict[str, Any]) -> None:
    """Tag a checkpoint with the model's registry name and the data config of the attached trainer's DataModule."""
    checkpoint["bilatcf_model"] = module.model_name
    trainer = getattr(module, "_trainer", None)
    data = data_config(getattr(trainer, "datamodule", None))
    if data is not None:
        checkpoint["bilatcf_data"] = data


def data_config(datamodule: Any) -> dict[str, Any] | None:
    """``{"class_path", "init_args"}`` of a DataModule (its saved hyper-parameters), in plain YAML-able values."""
    if datamodule is None:
        return None
    cls = type(datamodule)
    hparams = dict(getattr(datamodule, "hparams", {}) or {})
    init_args = {key: _plain(value) for key, value in hparams.items() if not key.startswith("_")}
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# ---------------------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class CheckpointInfo:
    """What bilatcf needs from a checkpoint file before building anything from it."""

    path: Path
    model_name: str
    model_init_args: dict[str, Any]
    data: dict[str, Any] | None
    epoch: int | None
    global_step: int | None
    resumable: bool  # holds optimizer, loop and callback states (not a weights-only file)
    callback_states: dict[str, Any] = field(default_factory=dict)

    @property
    def model_class_path(self) -> str:
        from bilatcf.registry import get_model_class, list_models

        if self.model_name not in list_models(include_hidden=True):
            raise ConfigError(
                f"the checkpoint {self.path} was written by model '{self.model_name}', which this version of bilatcf "
                f"does not have (models: {', '.join(list_models())}). Use the bilatcf version that wrote it."
            )
        cls = get_model_class(self.model_name)
        return f"{cls.__module__}.{cls.__qualname__}"

    def datamodule(self) -> Any:
        """The DataModule the model was trained on, built from the recorded data config (the synthetic default for a
        checkpoint from before the data was recorded)."""
        from bilatcf.cli_checks import import_class
        from bilatcf.data.datamodule import BilateralDataModule

        if not self.data:
            return BilateralDataModule()
        return import_class(self.data["class_path"])(**(self.data.get("init_args") or {}))

    @property
    def run_dir(self) -> Path | None:
        """The run folder the file lies in (``<run dir>/checkpoints/<file>``), as the run's checkpoint callbacks name
        it; None for a file elsewhere."""
        folder = self.path.parent
        if folder.name != "checkpoints":
            return None
        for state in self.callback_states.values():
            dirpath = state.get("dirpath") if isinstance(state, dict) else None
            if dirpath and os.path.isdir(dirpath) and os.path.samefile(dirpath, folder):
                return Path(dirpath).parent
        return folder.parent


def read_checkpoint(path: str | os.PathLike) -> CheckpointInfo:
    """Read and check a bilatcf checkpoint; anything else is a :class:`ConfigError` that says what the file is."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--ckpt_path {path} is a folder; pass a .ckpt file. {_WHERE}.")
    if not path.is_file():
        raise ConfigError(
            f"checkpoint not found: {path}. {_WHERE}; --ckpt_path also takes 'last', 'best' or 'hpc' to pick the "
            "checkpoint of the latest run under --trainer.default_root_dir."
        )
    checkpoint = _load(path)
    if not isinstance(checkpoint, dict):
        raise ConfigError(
            f"{path} is not a bilatcf checkpoint: it holds a {type(checkpoint).__name__}, not the dict that "
            f"`bilatcf fit` writes. {_WHERE}."
        )
    missing = [key for key in ("state_dict", "bilatcf_model") if key not in checkpoint]
    if missing:
        raise ConfigError(
            f"{path} is not a bilatcf checkpoint: it has no {' or '.join(repr(k) for k in missing)} entry (it was not "
            f"written by `bilatcf fit`). {_WHERE}."
        )
    hparams = {k: v for k, v in dict(checkpoint.get("hyper_parameters") or {}).items() if not str(k).startswith("_")}
    return CheckpointInfo(
        path=path,
        model_name=str(checkpoint["bilatcf_model"]),
        model_init_args=hparams,
        data=checkpoint.get("bilatcf_data") or _lightning_data_config(checkpoint),
        epoch=checkpoint.get("epoch"),
        global_step=checkpoint.get("global_step"),
        resumable="optimizer_states" in checkpoint and "loops" in checkpoint,
        callback_states=dict(checkpoint.get("callbacks") or {}),
    )


def _load(path: Path) -> Any:
    import torch

    with open(path, "rb") as handle:
        head = handle.read(4)
    # torch.save writes a zip archive (b"PK\x03\x04") or, in the legacy format, a pickle (protocol 2+: b"\x80").
    if head and not head.startswith((b"PK\x03\x04", b"\x80")):
        raise ConfigError(f"{path} is not a bilatcf checkpoint: it is not a PyTorch checkpoint file. {_WHERE}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note on the pickle protocol of foreign files
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message advises a load that can run arbitrary code: it is never shown for an untrusted file.
        if "weights only" in str(exc).lower():
            reason = "it holds Python objects other than tensors and plain values, and bilatcf does not load those"
        else:
            reason = "it is not a PyTorch checkpoint file"
    except EOFError:
        reason = "it is empty or truncated (an incomplete copy?)"
    except OSError as exc:
        reason = f"it cannot be read ({exc.strerror or exc})"
    except Exception as exc:  # noqa: BLE001 - any other failure to parse means the same to the user
        damaged = "zip" in str(exc).lower() or "PytorchStreamReader" in str(exc)
        reason = "it is damaged (an incomplete copy?)" if damaged else "it is not a PyTorch checkpoint file"
    raise ConfigError(f"{path} is not a bilatcf checkpoint: {reason}. {_WHERE}.")


def _lightning_data_config(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """Checkpoints written before ``bilatcf_data`` existed: Lightning's DataModule hyper-parameters, when the CLI
    recorded the class path with them."""
    hparams = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    if "_class_path" not in hparams:
        return None
    return {
        "class_path": hparams["_class_path"],
        "init_args": {k: v for k, v in hparams.items() if not str(k).startswith("_")},
    }


# ---------------------------------------------------------------------------------------------------------- finding
def find_checkpoint(keyword: str, root: str | os.PathLike) -> Path:
    """The file a ``ckpt_path`` keyword names among the runs under ``root`` (``--trainer.default_root_dir``).

    ``last``: the most recently written ``checkpoints/last*.ckpt`` of a run under ``root`` (``root/<logger
    name>/<version>/`` or ``root/``). ``best``: the best checkpoint recorded in that file. ``hpc``: the highest
    ``root/hpc_ckpt_<n>.ckpt`` (Lightning writes those when a SLURM job is requeued).
    """
    root = Path(root)
    if keyword == "hpc":
        numbers = [
            int(m.group(1))
            for f in root.glob("hpc_ckpt_*.ckpt")
            if (m := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", f.name))
        ]
        if not numbers:
            raise ConfigError(
                f"--ckpt_path hpc: there is no hpc_ckpt_<n>.ckpt in {root} (--trainer.default_root_dir); Lightning "
                "writes those when a SLURM job is requeued. Pass a checkpoint path, or 'last'."
            )
        return root / f"hpc_ckpt_{max(numbers)}.ckpt"
    candidates = [*root.glob("*/*/checkpoints/last*.ckpt"), *root.glob("checkpoints/last*.ckpt")]
    if not candidates:
        raise ConfigError(
            f"--ckpt_path {keyword}: no run under {root} (--trainer.default_root_dir) has a last.ckpt yet. Give the "
            "run's folder with --trainer.default_root_dir, or pass a checkpoint path."
        )
    last = max(candidates, key=lambda p: p.stat().st_mtime)
    if keyword == "last":
        return last
    return _best_of(read_checkpoint(last))


def _best_of(last: CheckpointInfo) -> Path:
    """The best checkpoint recorded by the monitoring ModelCheckpoint in a run's last checkpoint."""
    for state in last.callback_states.values():
        if isinstance(state, dict) and state.get("monitor") and state.get("best_model_path"):
            best = Path(state["best_model_path"])
            for candidate in (best, last.path.parent / best.name):  # the run folder may have moved since
                if candidate.is_file():
                    return candidate
    raise ConfigError(
        f"--ckpt_path best: the run of {last.path} recorded no best checkpoint that still exists. Pass a checkpoint "
        "path, or 'last'."
    )


# ---------------------------------------------------------------------------------------------------------- checking
def check_model_matches(info: CheckpointInfo, model_class: type, given: str) -> None:
    """Refuse a ``--model`` (name, class name or class path) other than the checkpoint's model."""
    name = getattr(model_class, "model_name", None)
    if name != info.model_name:
        raise ConfigError(
            f"the checkpoint {info.path} was written by model '{info.model_name}', but --model is '{given}'. "
            f"Use --model {info.model_name} (or leave --model out: it is read from the checkpoint)."
        )


def check_resumable(info: CheckpointInfo) -> None:
    """``fit --ckpt_path`` needs the optimizer and loop states, which best checkpoints do not keep."""
    if not info.resumable:
        raise ConfigError(
            f"{info.path} holds the model weights only (best checkpoints do), so `bilatcf fit` cannot resume from "
            "it. Resume from the run's last checkpoint: --ckpt_path last (or <run dir>/checkpoints/last.ckpt)."
        )


def check_data_matches(data: dict[str, Any], model_class: type, info: CheckpointInfo | None) -> None:
    """Refuse a data config the model cannot be trained or evaluated on.

    The model's ``data_options`` (e.g. SFF: ``four_view=True``) must hold, and for a checkpoint ``image_size``, ``task``
    and ``four_view`` must be what it was trained with: although the networks are fully convolutional, they learned
    lesion scale and texture at the training resolution, and a score for another task means something else, so metrics
    on such data would be silently wrong.
    """
    given = dict(data.get("init_args") or {})
    name = getattr(model_class, "model_name", model_class.__name__)
    for key, value in getattr(model_class, "data_options", {}).items():
        if key in given and not _same(given[key], value):
            raise ConfigError(
                f"model '{name}' needs the data option {key}={_show(value)}, but the data config has "
                f"{key}={_show(given[key])}: set --data.{key} {_show(value)} (or set it in the data YAML)."
            )
    if info is None or not info.data:
        return
    trained = dict(info.data.get("init_args") or {})
    problems = [
        (key, f"{key}={_show(trained[key])}")
        for key in MATCHED_DATA_OPTIONS
        if key in given and key in trained and not _same(given[key], trained[key])
    ]
    if problems:
        fixes = " ".join(f"--data.{key} {_show(trained[key])}" for key, _ in problems)
        reasons = "; ".join(
            f"{key}={_show(given[key])} where the model was trained with {was}" for key, was in problems
        )
        raise ConfigError(
            f"the data config does not fit the checkpoint {info.path}: {reasons}. Leave these data options out to use "
            f"the data the checkpoint was trained with, or set {fixes}."
        )


def _same(a: Any, b: Any) -> bool:
    return _plain(a) == _plain(b)


def _show(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(_show(v) for v in value) + "]"  # as the command line takes it
    return str(value)
