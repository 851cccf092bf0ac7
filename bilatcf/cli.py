"""The ``bilatcf`` command: LightningCLI (fit / validate / test / predict) plus ``list``, ``data``, ``benchmark``,
``explain``.

``bilatcf fit --model cgn`` trains on the synthetic default, tests the best checkpoint and writes ``metrics.json`` in
the run directory. ``--model`` takes the lowercase registry name; everything else is standard LightningCLI
(``--config``, ``--print_config``, ``--seed_everything``, a saved ``config.yaml`` per run).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bilatcf.errors import BilatcfError, ConfigError

_EXTRA_COMMANDS = ("list", "data", "benchmark", "explain")
DEFAULT_CALLBACKS = [
    {
        "class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
        "init_args": {"monitor": "val/auc", "mode": "max", "save_last": True, "filename": "best-{epoch}"},
    },
    {"class_path": "bilatcf.metrics.callbacks.EvaluationCallback"},
    {"class_path": "bilatcf.metrics.callbacks.FigureCallback"},
    {"class_path": "bilatcf.predict.PredictionWriter"},
]


def _build_cli_class():
    import pytorch_lightning as pl
    from pytorch_lightning.cli import LightningCLI
    from pytorch_lightning.strategies import DDPStrategy

    from bilatcf.data.datamodule import BilateralDataModule
    from bilatcf.models.base import BilateralModule

    class BilatcfCLI(LightningCLI):
        def __init__(self, args: list[str] | None = None, **kwargs: Any) -> None:
            super().__init__(
                BilateralModule,
                pl.LightningDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                save_config_kwargs={"overwrite": True},
                args=args,
                **kwargs,
            )

        def add_arguments_to_parser(self, parser) -> None:
            parser.add_argument(
                "--test_after_fit",
                type=bool,
                default=True,
                help="After fit, test the best checkpoint and write metrics.json.",
            )
            parser.set_defaults(
                {
                    "data": {"class_path": "bilatcf.data.datamodule.BilateralDataModule"},
                    "trainer.callbacks": DEFAULT_CALLBACKS,
                    "trainer.max_epochs": 10,
                    "trainer.default_root_dir": "runs",
                    "trainer.log_every_n_steps": 10,
                    "seed_everything": 0,
                }
            )

        def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
            # GAN methods update G and D in separate backward passes: DDP must tolerate parameters without gradient.
            if self._get(self.config_init, "trainer", default={}).get("strategy") == "ddp":
                kwargs["strategy"] = DDPStrategy(find_unused_parameters=True)
            return super().instantiate_trainer(**kwargs)

        def after_fit(self) -> None:
            if not self.config[self.subcommand].get("test_after_fit", True) or self.trainer.fast_dev_run:
                return
            if self.trainer.interrupted:
                return
            best = self.trainer.checkpoint_callback.best_model_path if self.trainer.checkpoint_callback else ""
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)
            _print_summary(self.trainer)

        def after_test(self) -> None:
            _print_summary(self.trainer)

    return BilatcfCLI, BilateralDataModule


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


def _rewrite_model_argument(args: list[str]) -> list[str]:
    """Map ``--model cgn`` (registry name) to the class path LightningCLI expects; fill it in from ``--ckpt_path``."""
    from bilatcf.registry import get_model_class

    def class_path(name: str) -> str:
        cls = get_model_class(name)
        return f"{cls.__module__}.{cls.__qualname__}"

    out, given = [], False
    i = 0
    while i < len(args):
        arg = args[i]
        if (
            arg == "--model"
            and i + 1 < len(args)
            and "." not in args[i + 1]
            and not args[i + 1].endswith((".yaml", ".yml"))
        ):
            out += [arg, class_path(args[i + 1])]
            given = True
            i += 2
            continue
        if arg.startswith("--model=") and "." not in arg.split("=", 1)[1]:
            out.append(f"--model={class_path(arg.split('=', 1)[1])}")
            given = True
        else:
            given = given or arg == "--model" or arg.startswith("--model=")
            if arg == "--config" and i + 1 < len(args):
                given = given or _config_sets_model(args[i + 1])
            out.append(arg)
        i += 1
    ckpt = _option(args, "--ckpt_path")
    if ckpt:
        name = checkpoint_model_name(ckpt)
        if not given and name:
            out[1:1] = ["--model", class_path(name)]
        requested = _option(args, "--model")
        if name and requested and "." not in requested and requested.lower() != name:
            raise ConfigError(
                f"the checkpoint {ckpt} was written by model '{name}', but --model is '{requested}'. "
                f"Use --model {name} (or leave --model out: it is read from the checkpoint)."
            )
    return out


def _config_sets_model(path: str) -> bool:
    import yaml

    try:
        return "model" in (yaml.safe_load(Path(path).read_text()) or {})
    except (OSError, yaml.YAMLError):
        return False  # LightningCLI reports unreadable configs itself


def _option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def checkpoint_model_name(path: str) -> str | None:
    """The registry name stored in a bilatcf checkpoint (None for other checkpoints)."""
    import torch

    if not Path(path).is_file():
        raise ConfigError(f"checkpoint not found: {path}. Runs keep theirs under <run dir>/checkpoints/.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ConfigError(
            f"cannot read checkpoint {path} ({type(exc).__name__}: {exc}); pass a .ckpt written by `bilatcf fit`."
        ) from exc
    return checkpoint.get("bilatcf_model")


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``bilatcf`` console script."""
    args = list(sys.argv[1:] if args is None else args)
    try:
        if args and args[0] in _EXTRA_COMMANDS:
            from bilatcf import commands

            return getattr(commands, f"run_{args[0]}")(args[1:])
        cli_class, _ = _build_cli_class()
        cli_class(args=_rewrite_model_argument(args))
        return 0
    except BilatcfError as exc:
        print(f"bilatcf: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
