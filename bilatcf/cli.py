"""The ``bilatcf`` command: LightningCLI (fit / validate / test / predict) plus ``list``, ``data``, ``benchmark`` and
``explain``.

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
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bilatcf.cli_checks import (
    as_dict,
    check_cache,
    check_config_files,
    check_trainer_numbers,
    check_writable,
    default_root_dir,
    explain_parse_error,
    given_model,
    import_class,
    one_line,
    option,
    replace_option,
    resolve_model_names,
)
from bilatcf.errors import BilatcfError, ConfigError

#: Every command with its description, as ``bilatcf --help`` lists them.
COMMANDS = {
    "fit": "train a model (on the synthetic data unless --data says otherwise), test its best checkpoint and write "
    "metrics.json; --ckpt_path last resumes the latest run",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split of the data it was trained on: metrics table and metrics.json",
    "predict": "write predictions.csv and heatmaps of a checkpoint for the test split",
    "list": "list the registered models, one line each, with their paper",
    "data": "synthetic data, dataset manifests and the image cache (synth, preview, index, check, cache)",
    "benchmark": "run a leaderboard (configs/benchmark/<name>.yaml): every model x data x seed x fold cell as a fit "
    "run, resumable, then leaderboard_<name>.csv and .md",
    "explain": "PNG panels of a checkpoint's pairs (target, reference, counterfactual, explanation, CAM), their ROC "
    "curve and an offline index.html gallery: bilatcf explain --ckpt_path best --out explain/",
}
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
_EXTRA_COMMANDS = ("list", "data", "benchmark", "explain")
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
#: Both write into the run folder <default_root_dir>/lightning_logs/version_N: their save_dir is the run root, and one
#: version is chosen for both (bilatcf.loggers.prepare_loggers). An explicit --trainer.logger replaces them.
DEFAULT_LOGGERS = [
    {"class_path": "pytorch_lightning.loggers.CSVLogger"},
    {"class_path": "pytorch_lightning.loggers.TensorBoardLogger"},
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

    from bilatcf import checkpoints, loggers
    from bilatcf.data.datamodule import BilateralDataModule
    from bilatcf.models.base import BilateralModule

    class BilatcfCLI(LightningCLI):
        """LightningCLI with bilatcf's defaults, checkpoint handling and one-paragraph errors."""

        def __init__(self, args: list[str], **kwargs: Any) -> None:
            args = resolve_model_names(list(args))
            self.checkpoint: checkpoints.CheckpointInfo | None = None
            self.ckpt_root: str | None = None
            self.run_root = default_root_dir(args)
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
                **{"save_config_callback": loggers.RunConfigCallback, **kwargs},  # explain saves no config
            )

        # -------------------------------------------------------------- parsing
        def _read_checkpoint(self, args: list[str]) -> list[str]:
            """Resolve a ``--ckpt_path`` keyword to a file and read the checkpoint, so its model and data become the
            parser's defaults (explicit options still override them)."""
            value = option(args, "--ckpt_path")
            if not value or value.lower() in ("null", "none"):
                return args
            if value in checkpoints.KEYWORDS:
                self.ckpt_root = default_root_dir(args)
                path = checkpoints.find_checkpoint(value, self.ckpt_root)
                _announce(f"--ckpt_path {value}: {path}")
                args = replace_option(args, "--ckpt_path", str(path))
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
                "trainer.logger": [{**logger, "init_args": {"save_dir": self.run_root}} for logger in DEFAULT_LOGGERS],
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
                check_config_files(args, self._subcommand_parsers[subcommand], subcommand, self.checkpoint)
            try:
                super().parse_arguments(parser, args)
            except ArgumentError as exc:
                raise ConfigError(explain_parse_error(str(exc), args, subcommand, self._parsers())) from None

        def _parsers(self) -> dict[str, Any]:
            return getattr(self, "_subcommand_parsers", {})

        def _parse_ckpt_path(self) -> None:
            # Lightning >= 2.5 copies the checkpoint's hyper-parameters over the parsed options here. bilatcf has
            # already made them (and the data config) the defaults, so explicit options win on every version.
            return

        def before_instantiate_classes(self) -> None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            trainer = config.get("trainer") or {}
            check_trainer_numbers(trainer)
            root = trainer.get("default_root_dir") or "runs"
            if self.ckpt_root is not None and os.path.normpath(root) != os.path.normpath(self.ckpt_root):
                raise ConfigError(
                    f"--ckpt_path keywords look for runs under {self.ckpt_root}, but the run directory is {root}: "
                    f"give it on the command line (--trainer.default_root_dir {root})."
                )
            model_class = import_class(config.model.class_path)
            given = config.get("ckpt_path")
            if self.checkpoint is None and given:  # from a --config file: its model and data are not the defaults
                if given in checkpoints.KEYWORDS:
                    raise ConfigError(f"give `--ckpt_path {given}` on the command line, not in a --config file.")
                self.checkpoint = checkpoints.read_checkpoint(given)
            if self.checkpoint is not None:
                checkpoints.check_model_matches(self.checkpoint, model_class, given_model(config.model.class_path))
                if self.subcommand == "fit":
                    checkpoints.check_resumable(self.checkpoint)
            data = config.get("data")
            if data is not None and data.get("class_path"):
                checkpoints.check_data_matches(as_dict(data), model_class, self.checkpoint)
            check_writable(root, "the run directory (--trainer.default_root_dir)", "choose a writable folder")
            check_cache()

        # -------------------------------------------------------------- trainer
        def instantiate_classes(self) -> None:
            # The loggers are built with their folders filled in: one run folder, or the checkpoint's own when fit
            # resumes (`<root>/lightning_logs/<version>`), so the run continues there and its checkpoint callbacks
            # restore their state (best score, file names). config.yaml keeps the options as given, so a run
            # started from it gets a folder of its own.
            config = self.config[self.subcommand] if self.subcommand else self.config
            given = config.trainer.logger
            root = config.trainer.default_root_dir or "runs"
            config.trainer.logger = loggers.prepare_loggers(given, root, self._resume_dir())
            try:
                super().instantiate_classes()
            finally:
                config.trainer.logger = given

        def _resume_dir(self) -> Path | None:
            return self.checkpoint.run_dir if self.subcommand == "fit" and self.checkpoint is not None else None

        def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
            try:
                trainer = super().instantiate_trainer(**kwargs)
            except (MisconfigurationException, ValueError, TypeError) as exc:
                raise ConfigError(
                    f"invalid trainer options: {one_line(str(exc))} Check the --trainer.* options (or the trainer "
                    "section of the --config file); `bilatcf fit --help` lists them."
                ) from None
            loggers.settle_run_folder(trainer)
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
def _best_checkpoint_path(trainer) -> str:
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "monitor", None) and getattr(callback, "best_model_path", ""):
            return callback.best_model_path
    return ""


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
    # Under DDP Lightning broadcasts log_dir from rank 0: every rank must ask, or rank 0 waits on a finished peer.
    run_dir = trainer.log_dir
    if trainer.global_rank != 0:
        return
    from bilatcf.metrics.callbacks import EvaluationCallback

    for callback in trainer.callbacks:
        if isinstance(callback, EvaluationCallback) and getattr(callback, "results", None):
            print("\n" + format_metrics(callback.results))
    print(f"run dir: {run_dir}")


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
        except OSError as exc:
            message = _environment_error(exc)
            if message is None:
                raise
            print(f"bilatcf: error: {message}", file=sys.stderr)
            return 2
        except SystemExit as exc:  # --help, --print_config, and the argparse parsers of `list` and `data`
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        except Exception as exc:
            # A BilatcfError, raised directly or wrapped by jsonargparse in its own ValueError (what a model's or
            # DataModule's __init__ raises while the CLI builds it).
            cause = _wrapped_user_error(exc)
            if cause is None:
                raise
            print(f"bilatcf: error: {cause}", file=sys.stderr)
            return 2


def _wrapped_user_error(exc: BaseException) -> BilatcfError | None:
    """The first :class:`BilatcfError` in ``exc``'s chain of causes, if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, BilatcfError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _run(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    command = args[0]
    if command in _EXTRA_COMMANDS:
        if command == "benchmark":
            from bilatcf.benchmark import run_benchmark

            return run_benchmark(args[1:])
        if command == "explain":  # a predict loop through this CLI class: the same checkpoint and data handling
            from bilatcf.explain import run_explain

            return run_explain(args[1:], _build_cli_class()[0])
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
