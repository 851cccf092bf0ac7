"""The ``bilatcf`` command: LightningCLI (fit / validate / test / predict) plus ``list`` and ``data``.

``bilatcf fit --model cgn`` trains on the synthetic default, tests the best checkpoint and writes ``metrics.json`` in
the run directory. ``--model`` takes the lowercase registry name; everything else is standard LightningCLI
(``--config``, ``--print_config``, ``--seed_everything``, a saved ``config.yaml`` per run). With ``--ckpt_path`` (a
file, or ``last`` / ``best`` / ``hpc`` for the latest run under ``--trainer.default_root_dir``) the checkpoint's model
and data are the defaults, and ``fit`` resumes the run in its own folder. Bad input ends in one paragraph and exit
status 2, never a traceback (``docs/troubleshooting.md`` lists the messages).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bilatcf.errors import BilatcfError, ConfigError

#: Every command with its description, as ``bilatcf --help`` lists them.
COMMANDS = {
    "fit": "train a model (on the synthetic data unless --data says otherwise), test its best checkpoint and write "
    "metrics.json; --ckpt_path last resumes the latest run",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split of the data it was trained on: metrics table and metrics.json",
    "predict": "write predictions.csv and heatmaps of a checkpoint for the test split",
    "list": "list the registered models, one line each, with their paper",
    "data": "synthetic data, manifests and the image cache (synth, preview, check, cache)",
}
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
_EXTRA_COMMANDS = ("list", "data")
DEFAULT_CALLBACKS = [
    {
        # The best epoch on val/auc, for test and predict: the weights (plus hyper-parameters and data config) only.
        "class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
        "init_args": {"monitor": "val/auc", "mode": "max", "filename": "best-{epoch}", "save_weights_only": True},
    },
    {"class_path": "bilatcf.checkpoints.LastCheckpoint"},
    {"class_path": "bilatcf.metrics.callbacks.EvaluationCallback"},
    {"class_path": "bilatcf.metrics.callbacks.FigureCallback"},
    {"class_path": "bilatcf.predict.PredictionWriter"},
]
#: Third-party messages shown on every call that tell the user nothing about their run.
_NOISE_WARNINGS = (
    r"LightningCLI's args parameter is intended to run from within Python",
    r"The '\w+' does not have many workers",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)
_NOISE_LOGS = re.compile(r"^(GPU|TPU|HPU|IPU) available: |^💡 Tip: ")


def _build_cli_class():
    import pytorch_lightning as pl
    from jsonargparse import ArgumentError
    from pytorch_lightning.cli import LightningCLI
    from pytorch_lightning.utilities.exceptions import MisconfigurationException

    from bilatcf import checkpoints
    from bilatcf.data.datamodule import BilateralDataModule
    from bilatcf.models.base import BilateralModule

    class BilatcfCLI(LightningCLI):
        """LightningCLI with bilatcf's defaults, checkpoint handling and one-paragraph errors."""

        def __init__(self, args: list[str], **kwargs: Any) -> None:
            args = _resolve_model_names(list(args))
            self.checkpoint: checkpoints.CheckpointInfo | None = None
            self.ckpt_root: str | None = None
            args = self._read_checkpoint(args)
            parser_kwargs = {
                "prog": "bilatcf",
                "exit_on_error": False,
                **{name: {"exit_on_error": False, "description": COMMANDS[name]} for name in LIGHTNING_COMMANDS},
            }
            super().__init__(
                BilateralModule,
                pl.LightningDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                save_config_kwargs={"overwrite": True},
                parser_kwargs=parser_kwargs,
                args=args,
                **kwargs,
            )

        # -------------------------------------------------------------- parsing
        def _read_checkpoint(self, args: list[str]) -> list[str]:
            """Resolve a ``--ckpt_path`` keyword to a file and read the checkpoint, so its model and data become the
            parser's defaults (explicit options still override them)."""
            value = _option(args, "--ckpt_path")
            if not value or value.lower() in ("null", "none"):
                return args
            if value in checkpoints.KEYWORDS:
                self.ckpt_root = _default_root_dir(args)
                path = checkpoints.find_checkpoint(value, self.ckpt_root)
                _announce(f"--ckpt_path {value}: {path}")
                args = _replace_option(args, "--ckpt_path", str(path))
                value = str(path)
            self.checkpoint = checkpoints.read_checkpoint(value)
            return args

        def add_arguments_to_parser(self, parser) -> None:
            parser.add_argument(
                "--test_after_fit",
                type=bool,
                default=True,
                help="After fit, test the best checkpoint and write metrics.json.",
            )
            defaults: dict[str, Any] = {
                "data": {"class_path": "bilatcf.data.datamodule.BilateralDataModule"},
                "trainer.callbacks": DEFAULT_CALLBACKS,
                "trainer.max_epochs": 10,
                "trainer.default_root_dir": "runs",
                "trainer.log_every_n_steps": 10,
                "seed_everything": 0,
            }
            if self.checkpoint is not None:
                info = self.checkpoint
                defaults["model"] = {"class_path": info.model_class_path, "init_args": info.model_init_args}
                if info.data:
                    defaults["data"] = info.data
            parser.set_defaults(defaults)

        def setup_parser(self, add_subcommands: bool, main_kwargs: dict, subparser_kwargs: dict) -> None:
            super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
            if add_subcommands:
                # `bilatcf test` prints the full metrics table itself; Lightning's own table would repeat part of it.
                self._subcommand_parsers["test"].set_defaults(verbose=False)

        def parse_arguments(self, parser, args) -> None:
            subcommand = args[0] if args and args[0] in LIGHTNING_COMMANDS else None
            if subcommand is not None:
                _check_config_files(args, self._subcommand_parsers[subcommand], subcommand, self.checkpoint)
            try:
                super().parse_arguments(parser, args)
            except ArgumentError as exc:
                raise ConfigError(_explain_parse_error(str(exc), args, subcommand, self._parsers())) from None

        def _parsers(self) -> dict[str, Any]:
            return getattr(self, "_subcommand_parsers", {})

        def _parse_ckpt_path(self) -> None:
            # Lightning >= 2.5 copies the checkpoint's hyper-parameters over the parsed options here. bilatcf has
            # already made them (and the data config) the defaults, so explicit options win on every version.
            return

        def before_instantiate_classes(self) -> None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            trainer = config.get("trainer") or {}
            _check_trainer_numbers(trainer)
            root = trainer.get("default_root_dir") or "runs"
            if self.ckpt_root is not None and os.path.normpath(root) != os.path.normpath(self.ckpt_root):
                raise ConfigError(
                    f"--ckpt_path keywords look for runs under {self.ckpt_root}, but the run directory is {root}: "
                    f"give it on the command line (--trainer.default_root_dir {root})."
                )
            model_class = _import_class(config.model.class_path)
            given = config.get("ckpt_path")
            if self.checkpoint is None and given:  # from a --config file: its model and data are not the defaults
                if given in checkpoints.KEYWORDS:
                    raise ConfigError(f"give `--ckpt_path {given}` on the command line, not in a --config file.")
                self.checkpoint = checkpoints.read_checkpoint(given)
            if self.checkpoint is not None:
                checkpoints.check_model_matches(self.checkpoint, model_class, _given_model(config.model.class_path))
                if self.subcommand == "fit":
                    checkpoints.check_resumable(self.checkpoint)
            data = config.get("data")
            if data is not None and data.get("class_path"):
                checkpoints.check_data_matches(_as_dict(data), model_class, self.checkpoint)
            _check_writable(root, "the run directory (--trainer.default_root_dir)", "choose a writable folder")
            _check_cache()

        # -------------------------------------------------------------- trainer
        def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
            trainer_config = self._get(self.config_init, "trainer", default={})
            if (
                self.subcommand == "fit"
                and self.checkpoint is not None
                and trainer_config.get("logger") in (None, True)
            ):
                logger = _resume_logger(self.checkpoint)
                if logger is not None:
                    kwargs["logger"] = logger
            try:
                trainer = super().instantiate_trainer(**kwargs)
            except (MisconfigurationException, ValueError, TypeError) as exc:
                raise ConfigError(
                    f"invalid trainer options: {_one_line(str(exc))} Check the --trainer.* options (or the trainer "
                    "section of the --config file); `bilatcf fit --help` lists them."
                ) from None
            configure_ddp(trainer.strategy, self.model)
            return trainer

        def before_fit(self) -> None:
            if self.checkpoint is None:
                return
            info = self.checkpoint
            # The run folder is reused on purpose: Lightning's note that it is not empty is expected here.
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            where = f"the run continues in {self.trainer.log_dir}"
            if info.run_dir is None or Path(self.trainer.log_dir or "").resolve() != info.run_dir.resolve():
                where = f"this run writes to {self.trainer.log_dir} (a new run folder)"
            _announce(f"resuming from {info.path} (epoch {info.epoch}, global step {info.global_step}); {where}")

        def after_fit(self) -> None:
            if not self.config[self.subcommand].get("test_after_fit", True) or self.trainer.fast_dev_run:
                return
            if self.trainer.interrupted:
                return
            best = _best_checkpoint_path(self.trainer)
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None, verbose=False)
            _print_summary(self.trainer)

        def after_test(self) -> None:
            _print_summary(self.trainer)

    return BilatcfCLI, BilateralDataModule


# ------------------------------------------------------------------------------------------------------- arguments
def _option(args: list[str], name: str) -> str | None:
    """The value of ``name`` on a command line (``--name value`` or ``--name=value``; the last one wins)."""
    value = None
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def _replace_option(args: list[str], name: str, value: str) -> list[str]:
    out = list(args)
    for i, arg in enumerate(out):
        if arg == name and i + 1 < len(out):
            out[i + 1] = value
        elif arg.startswith(name + "="):
            out[i] = f"{name}={value}"
    return out


def _config_paths(args: list[str]) -> list[str]:
    paths = []
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            paths.append(args[i + 1])
        elif arg.startswith("--config="):
            paths.append(arg.split("=", 1)[1])
    return paths


def _load_yaml(path: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # the parser reports unreadable config files itself


def _default_root_dir(args: list[str]) -> str:
    """``trainer.default_root_dir`` as the command line or its --config files set it (default ``runs``)."""
    value = _option(args, "--trainer.default_root_dir")
    if value:
        return value
    root = "runs"
    for path in _config_paths(args):
        config = _load_yaml(path)
        trainer = config.get("trainer") if isinstance(config, dict) else None
        if isinstance(trainer, dict) and trainer.get("default_root_dir"):
            root = str(trainer["default_root_dir"])
    return root


def _resolve_model_names(args: list[str]) -> list[str]:
    """``--model cgn`` → the registered class path.

    jsonargparse resolves class names of imported subclasses (``--model CGN``) and full class paths itself, but not the
    lowercase registry names, and has no way to register aliases; this is the only rewriting of the command line.
    """
    from bilatcf.registry import get_model_class

    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--model" and i + 1 < len(out):
            index, prefix = i + 1, ""
        elif arg.startswith("--model="):
            index, prefix = i, "--model="
        else:
            continue
        value = out[index][len(prefix) :]
        if value and "." not in value and not value.startswith(("{", "[")):
            cls = get_model_class(value)
            out[index] = f"{prefix}{cls.__module__}.{cls.__qualname__}"
    return out


def _import_class(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _given_model(class_path: str) -> str:
    cls = _import_class(class_path)
    return getattr(cls, "model_name", None) or class_path


def checkpoint_model_name(path: str) -> str:
    """The registry name stored in a bilatcf checkpoint (a :class:`ConfigError` for any other file)."""
    from bilatcf.checkpoints import read_checkpoint

    return read_checkpoint(path).model_name


def _as_dict(namespace: Any) -> dict[str, Any]:
    return namespace.as_dict() if hasattr(namespace, "as_dict") else dict(namespace)


# ------------------------------------------------------------------------------------------------------- config errors
def _parser_keys(parser) -> set[str]:
    return {action.dest for action in parser._actions if not action.dest.endswith(".help")} - {"help"}


def _class_keys(class_path: str | None) -> set[str] | None:
    """Init argument names of a class, or None when unknown (unresolvable, or it takes ``**kwargs``)."""
    if not class_path:
        return None
    try:
        cls = _import_class(class_path)
    except (ImportError, AttributeError, ValueError):
        return None  # the parser reports a bad class path itself
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL}


def _suggest(key: str, valid: set[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""


def _check_config_files(args: list[str], parser, subcommand: str, checkpoint: Any) -> None:
    """Name the file, the key and the nearest valid key for a misspelled key in a --config file."""
    keys = _parser_keys(parser)
    top = {key.split(".")[0] for key in keys}
    trainer_keys = {key[len("trainer.") :] for key in keys if key.startswith("trainer.")}
    class_paths = {
        "model": _option(args, "--model") or (checkpoint.model_class_path if checkpoint is not None else None),
        "data": _option(args, "--data") or "bilatcf.data.datamodule.BilateralDataModule",
    }
    for path in _config_paths(args):
        config = _load_yaml(path)
        if not isinstance(config, dict):
            continue
        problem = None
        for key in config:
            if key not in top:
                problem = (str(key), _suggest(str(key), top))
                break
        trainer = config.get("trainer")
        if problem is None and isinstance(trainer, dict):
            for key in trainer:
                if key not in trainer_keys:
                    problem = (f"trainer.{key}", _suggest(str(key), trainer_keys, "trainer."))
                    break
        for group in ("model", "data"):
            section = config.get(group)
            if problem is not None or not isinstance(section, dict):
                continue
            class_paths[group] = section.get("class_path") or class_paths[group]
            problem = _check_init_args(group, section, class_paths[group])
        if problem is not None:
            key, suggestion = problem
            raise ConfigError(
                f"{path}: unknown key '{key}'{suggestion}. `bilatcf {subcommand} --help` lists every option "
                f"(and `bilatcf {subcommand} --model NAME --print_config` a complete config)."
            )


def _check_init_args(group: str, section: dict, class_path: str | None) -> tuple[str, str] | None:
    valid = _class_keys(class_path)
    if valid is None:
        return None
    init_args = section.get("init_args") or {}
    if isinstance(init_args, dict):
        for key in init_args:
            if key not in valid:
                return f"{group}.init_args.{key}", _suggest(str(key), valid, f"{group}.init_args.")
    for key in section:
        if key not in valid | {"class_path", "init_args", "dict_kwargs"}:
            return f"{group}.{key}", _suggest(str(key), valid | {"class_path", "init_args"}, f"{group}.")
    return None


def _explain_parse_error(message: str, args: list[str], subcommand: str | None, parsers: dict[str, Any]) -> str:
    """One paragraph for a jsonargparse error, with the nearest valid option where one was misspelled."""
    help_hint = f"`bilatcf {subcommand} --help` lists every option." if subcommand else "`bilatcf --help` lists them."
    parser = parsers.get(subcommand) if subcommand else None
    options = {f"--{key}" for key in _parser_keys(parser)} if parser is not None else set()
    if match := re.search(r"[Uu]nrecognized arguments: (\S+)", message):
        option = match.group(1).split("=")[0]
        return f"unknown option {option}{_suggest(option, options)}. {help_hint}"
    if match := re.search(r"does not accept option '([^']+)'", message):
        option = "--" + match.group(1)
        return f"unknown option {option}{_suggest(option, options)}. {help_hint}"
    if re.search(r"[Kk]ey '(?:\w+\.)?model' is required|arguments are required: (?:\w+\.)?model\b", message):
        return (
            "no model given: pass --model NAME (`bilatcf list` shows the names), a --config with a model section, "
            "or --ckpt_path."
        )
    if match := re.search(r"Problem with given class_path '([^']+)':\s*Option '([^']+)' is not accepted", message):
        class_path, option = match.groups()
        group = "model" if re.search(r'Parser key "model"', message) else "data"
        valid = _class_keys(class_path) or set()
        return (
            f"unknown option --{group}.{option} for {class_path}{_suggest(option, valid, f'--{group}.')}. {help_hint}"
        )
    if match := re.match(r'Parser key "([^"]+)":', message):
        return f"invalid value for --{match.group(1)}: {_union_errors(message)} {help_hint}"
    return f"{_one_line(message)} {help_hint}"


def _union_errors(message: str) -> str:
    """The informative lines of a jsonargparse type error (not the Union bookkeeping, not the ``None`` alternative)."""
    skip = ("Does not validate", "Subtypes:", "Errors:", "Given value type:", "Given value: NestedArg")
    lines = [line.strip(" -") for line in message.splitlines()[1:]]
    kept = [line for line in lines if line and not line.startswith(skip) and "NoneType" not in line]
    text = re.sub(r"<class '(?:[\w]+\.)*(\w+)'>", r"\1", "; ".join(kept))
    text = re.sub(r"Expected a typing\.Literal\[(.*?)\]", r"expected one of \1", text).replace(":;", ":")
    text = re.sub(r"Expected a (\w+)", lambda m: f"expected {'an' if m[1][0] in 'aeiou' else 'a'} {m[1]}", text)
    text = re.sub(r"Given value: (.*)$|Got value: (.*)$", lambda m: f"got {m[1] or m[2]}", text)
    if "Expected a tuple" in text or "Expected a list" in text:
        text += " (lists are written [a,b] on the command line, e.g. --data.image_size [128,64])"
    return text + "."


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ------------------------------------------------------------------------------------------------------- checks
_TRAINER_COUNTS = {
    # option: (smallest int allowed, what it means)
    "max_epochs": (-1, "a number of epochs, or -1 for no limit"),
    "max_steps": (-1, "a number of steps, or -1 for no limit"),
    "log_every_n_steps": (1, "a positive number of steps"),
    "check_val_every_n_epoch": (1, "a positive number of epochs"),
}
_TRAINER_LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches")


def _check_trainer_numbers(trainer: Any) -> None:
    """Numeric trainer options, checked before any work with a message that names the option."""
    for key, (low, meaning) in _TRAINER_COUNTS.items():
        value = trainer.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ConfigError(f"--trainer.{key} {value} is not valid: it must be {meaning} (an integer >= {low}).")
    for key in _TRAINER_LIMITS:
        value = trainer.get(key)
        if value is None or isinstance(value, bool):
            continue
        # As Lightning reads them: a fraction in [0, 1], or a whole number of batches (2 and 2.0 alike).
        if not (0.0 <= value <= 1.0 or (value > 1 and value % 1 == 0)):
            shown = int(value) if isinstance(value, float) and value.is_integer() else value
            raise ConfigError(
                f"--trainer.{key} {shown} is not valid: give a number of batches (an integer >= 0) or a fraction of "
                "the split (a float between 0.0 and 1.0)."
            )


def _check_writable(folder: str | os.PathLike, what: str, fix: str) -> None:
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot write {what} {folder}: {exc.strerror or exc}; {fix}.") from None


def _check_cache() -> None:
    variable = os.environ.get("BILATCF_CACHE")
    folder = variable or Path.home() / ".cache" / "bilatcf"
    source = "the cache folder ($BILATCF_CACHE)" if variable else "the cache folder"
    _check_writable(folder, source, "set BILATCF_CACHE to a writable folder")


def _best_checkpoint_path(trainer) -> str:
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "monitor", None) and getattr(callback, "best_model_path", ""):
            return callback.best_model_path
    return ""


def _resume_logger(info: Any):
    """The default logger, pointed at the checkpoint's own run folder (``<save dir>/lightning_logs/<version>``), so a
    resumed run continues there and its checkpoint callbacks restore their state (best score, file names)."""
    from importlib.util import find_spec

    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    run_dir = info.run_dir
    if run_dir is None or run_dir.parent.name != "lightning_logs":
        return None  # not a default-logger run folder: the run gets a new one, as `before_fit` says
    logger_class = TensorBoardLogger if find_spec("tensorboard") or find_spec("tensorboardX") else CSVLogger
    return logger_class(save_dir=str(run_dir.parent.parent), name="lightning_logs", version=run_dir.name)


def configure_ddp(strategy: Any, model: Any) -> None:
    """DDP of a manual-optimization model (GAN methods) must tolerate parameters without gradient.

    Generator and discriminator update in separate backward passes, so each pass leaves the other network's parameters
    unused. Whatever form gave the strategy (``ddp``, ``ddp_spawn``, ``ddp_find_unused_parameters_false``, a
    ``DDPStrategy`` class path with init_args, ``auto`` on several devices), the instantiated strategy is a
    ``DDPStrategy``; its DistributedDataParallel options get ``find_unused_parameters=True`` before anything is wrapped.
    Models with automatic optimization keep the strategy as given.
    """
    from pytorch_lightning.strategies import DDPStrategy

    if not isinstance(strategy, DDPStrategy) or getattr(model, "automatic_optimization", True):
        return
    options = strategy._ddp_kwargs  # the keyword arguments Lightning passes to DistributedDataParallel
    if options.get("find_unused_parameters") is False:
        _announce(
            f"note: {type(model).__name__} uses manual optimization (separate backward passes per network), so DDP "
            "runs with find_unused_parameters=True instead of False."
        )
    options["find_unused_parameters"] = True


# ------------------------------------------------------------------------------------------------------- output
def _is_rank_zero() -> bool:
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def _announce(message: str) -> None:
    if _is_rank_zero():
        print(message, flush=True)


def _print_summary(trainer) -> None:
    if trainer.global_rank != 0:
        return
    from bilatcf.metrics.callbacks import EvaluationCallback

    for callback in trainer.callbacks:
        if isinstance(callback, EvaluationCallback) and getattr(callback, "results", None):
            print("\n" + format_metrics(callback.results))
    print(f"run dir: {trainer.log_dir}")


def format_metrics(results: dict[str, Any]) -> str:
    """A two-column table of the scalar metrics of a metrics.json dict."""
    rows = [
        (k, f"{v:.4f}" if isinstance(v, float) else str(v))
        for k, v in results.items()
        if not isinstance(v, (dict, list))
    ]
    width = max(len(k) for k, _ in rows) if rows else 0
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def usage() -> str:
    """``bilatcf --help``: every command with its full description."""
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: bilatcf COMMAND [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {text}" for name, text in COMMANDS.items()]
    lines += [
        "",
        "`bilatcf COMMAND --help` lists a command's options; `bilatcf fit --model NAME --print_config` prints a",
        "complete config. Troubleshooting: docs/troubleshooting.md.",
    ]
    return "\n".join(lines)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _NOISE_LOGS.search(str(record.getMessage()))


@contextlib.contextmanager
def _quiet_third_party() -> Iterator[None]:
    """Hide the third-party messages printed on every call (device summary, logger tips, notes on how the CLI is
    called); every other warning stays."""
    loggers = [
        logging.getLogger(name)
        for name in (
            "pytorch_lightning.utilities.rank_zero",
            "lightning_fabric.utilities.rank_zero",
            "lightning.pytorch.utilities.rank_zero",
            "lightning.fabric.utilities.rank_zero",
        )
    ]
    noise = _DropNoise()
    with warnings.catch_warnings():
        for message in _NOISE_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        for logger in loggers:
            logger.addFilter(noise)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeFilter(noise)


_ENVIRONMENT_ERRNOS = {"EACCES", "EPERM", "ENOTDIR", "EISDIR", "EROFS", "ENOSPC", "EDQUOT", "EEXIST"}


def _environment_error(exc: OSError) -> str | None:
    """A message for file-system errors a user can fix (permissions, a file where a folder should be, a full disk)."""
    import errno

    name = errno.errorcode.get(exc.errno or 0, "")
    if name not in _ENVIRONMENT_ERRNOS or not exc.filename:
        return None
    return f"cannot write {exc.filename}: {exc.strerror}. Check the path (and free space), or choose another folder."


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``bilatcf`` console script; returns the exit status."""
    args = list(sys.argv[1:] if args is None else args)
    with _quiet_third_party():
        try:
            return _run(args)
        except BilatcfError as exc:
            print(f"bilatcf: error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            message = _environment_error(exc)
            if message is None:
                raise
            print(f"bilatcf: error: {message}", file=sys.stderr)
            return 2
        except SystemExit as exc:  # --help, --print_config, and the argparse parsers of `list` and `data`
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)


def _run(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    command = args[0]
    if command in _EXTRA_COMMANDS:
        from bilatcf import commands

        return {"list": commands.run_list, "data": commands.run_data}[command](args[1:])
    if command not in LIGHTNING_COMMANDS and not command.startswith("-"):
        close = difflib.get_close_matches(command, list(COMMANDS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"unknown command '{command}'.{hint} Valid commands: {', '.join(COMMANDS)}; `bilatcf --help` says what "
            "each does."
        )
    cli_class, _ = _build_cli_class()
    cli_class(args=args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
