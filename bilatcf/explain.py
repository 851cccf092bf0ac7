"""``bilatcf explain``: a gallery of what a trained model sees in a few pairs, for a person to look at.

``bilatcf explain --ckpt_path best --out explain/`` reads the checkpoint's model and data through the same CLI
machinery as ``bilatcf test`` (checkpoint keywords, ``--data.*`` overrides, ``--config`` files, ``--trainer.*``
device options), runs Lightning's predict loop on pairs of one split and writes into ``--out``:

* ``pair_000.png``, ...: one panel per pair (:func:`bilatcf.viz.pair_panel`);
* ``roc.png``: the ROC curve of the pairs shown (when their known labels hold both classes);
* ``index.html``: the gallery, one self-contained page (no external CSS, scripts or fonts; relative image links),
  with the model, checkpoint, data, every pair's ids, label and score, and the AUC of the pairs shown.

Nothing is written into the training run folder: no logger, no checkpoint, no metrics file, no saved config.
"""

from __future__ import annotations

import html
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from bilatcf.cli_checks import check_writable, explain_parse_error, option
from bilatcf.errors import ConfigError, DataError
from bilatcf.metrics.callbacks import figure_sample, score_name
from bilatcf.models.outputs import require_output
from bilatcf.viz import pair_panel, roc_figure

Split = Literal["test", "val", "train", "all"]
SPLITS = ("test", "val", "train", "all")
#: The DataModule ``setup`` stage that checks a split has pairs (``None`` checks the training split).
_SETUP_STAGE = {"test": "test", "val": "validate", "train": None, "all": None}
DEFAULT_NUM_PAIRS = 16
DESCRIPTION = (
    "write PNG panels (target, reference, counterfactual or feature residual, explanation, CAM) of a checkpoint's "
    "pairs, their ROC curve and an offline index.html gallery into --out"
)


@dataclass
class ShownPair:
    """One row of the gallery."""

    file: str
    split: str
    ids: dict[str, str]
    label: int
    score: float
    pred: int


class _Selection(Dataset):
    """Chosen pairs of one or more splits' datasets, each sample's meta tagged with its split."""

    def __init__(self, entries: list[tuple[str, Dataset, int]]) -> None:
        self.entries = entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        split, dataset, position = self.entries[index]
        sample = dict(dataset[(0, position)])  # bilatcf's datasets take (epoch, index) keys
        sample["meta"] = {**sample["meta"], "split": split}
        return sample


def explain_loader(datamodule: pl.LightningDataModule, split: Split, num_pairs: int) -> DataLoader:
    """A loader of ``num_pairs`` pairs of ``split`` (``all``: train, val and test in that order), spread evenly over
    it so that the gallery is not one patient's pairs, as evaluation sees them: unaugmented and in order."""
    hparams = getattr(datamodule, "hparams", {})
    for name in ("augment", "shuffle"):  # explain shows the pairs as evaluation reads them
        if name in hparams:
            hparams[name] = False
    datamodule.prepare_data()
    datamodule.setup(_SETUP_STAGE[split])
    datasets: list[tuple[str, Dataset]] = []
    template: DataLoader | None = None
    for name in ("train", "val", "test") if split == "all" else (split,):
        try:
            loader = getattr(datamodule, f"{name}_dataloader")()
        except DataError:
            if split == "all":
                continue  # an empty split: `all` shows the others
            raise
        template = template or loader
        datasets.append((name, loader.dataset))
    entries = [(name, dataset, i) for name, dataset in datasets for i in range(len(dataset))]
    if not entries or template is None:
        raise DataError(
            f"--split {split} has no pairs in the checkpoint's data (or the --data options given). Choose another "
            "--split, or check the data with `bilatcf data check`."
        )
    chosen = np.unique(np.linspace(0, len(entries) - 1, min(num_pairs, len(entries))).round().astype(int))
    return DataLoader(
        _Selection([entries[i] for i in chosen]),
        batch_size=template.batch_size,
        shuffle=False,
        num_workers=template.num_workers,
        collate_fn=template.collate_fn,
    )


class ExplainWriter(pl.Callback):
    """Writes a panel per predicted pair into ``out`` and keeps the gallery rows (rank 0; explain runs one process)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.pairs: list[ShownPair] = []

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.pairs = []
        for stale in self.out.glob("pair_[0-9][0-9][0-9].png"):  # a previous gallery's panels, not this one's
            stale.unlink()

    def on_predict_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        output = require_output(outputs, "predict_step")
        label_field = getattr(pl_module, "label_field", "label")
        labels = getattr(output.batch, label_field)
        for row, meta in enumerate(output.batch.meta):
            file = f"pair_{len(self.pairs):03d}.png"
            pair_panel(figure_sample(output, row, label_field), self.out / file, score_name(pl_module))
            ids = {key: str(meta.get(key, "")) for key in ("patient_id", "laterality", "view", "image_id")}
            ids["reference_id"] = str(meta.get("reference_id", ""))
            self.pairs.append(
                ShownPair(
                    file=file,
                    split=str(meta.get("split", "")),
                    ids=ids,
                    label=int(labels[row]),
                    score=float(output.score[row]),
                    pred=int(output.pred[row]),
                )
            )


def build_explain_cli(cli_class: type) -> type:
    """The ``bilatcf explain`` command on top of bilatcf's LightningCLI class (``cli_class``): the same parser defaults
    from the checkpoint, the same checks, no subcommand; its trainer predicts with only :class:`ExplainWriter`."""
    from jsonargparse import ArgumentError
    from pytorch_lightning.cli import LightningArgumentParser

    class ExplainCLI(cli_class):
        def __init__(self, args: list[str]) -> None:
            super().__init__(args, run=False, save_config_callback=None, auto_configure_optimizers=False)

        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            super().add_arguments_to_parser(parser)
            parser.prog, parser.description = "bilatcf explain", DESCRIPTION
            parser.add_argument(
                "--ckpt_path",
                type=str,
                required=True,
                help="the checkpoint: a file, or best / last for the latest run under --trainer.default_root_dir",
            )
            parser.add_argument("--out", type=str, required=True, help="folder receiving the panels and index.html")
            parser.add_argument(
                "--split", type=Split, default="test", help="pairs of this split (all: train, val and test)"
            )
            parser.add_argument(
                "--num_pairs",
                type=int,
                default=DEFAULT_NUM_PAIRS,
                help="pairs drawn, spread evenly over the split",
            )
            parser.set_defaults({"trainer.callbacks": [], "trainer.logger": False})

        def parse_arguments(self, parser: LightningArgumentParser, args: list[str]) -> None:
            try:
                self.config = parser.parse_args(args)
            except ArgumentError as exc:
                raise ConfigError(explain_parse_error(str(exc), args, "explain", {"explain": parser})) from None

        def before_instantiate_classes(self) -> None:
            num_pairs = self.config.num_pairs
            if isinstance(num_pairs, bool) or num_pairs < 1:
                raise ConfigError(f"--num_pairs {num_pairs} is not valid: give the number of pairs to draw (>= 1).")
            super().before_instantiate_classes()
            check_writable(self.config.out, "the explain folder (--out)", "choose a writable folder")

        def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
            # One process, every chosen pair, no logger or checkpoint (nothing goes into the training run's folder).
            self.writer = ExplainWriter(Path(self.config.out))
            fixed = {
                "callbacks": [self.writer],
                "logger": False,
                "enable_checkpointing": False,
                "devices": 1,
                "num_nodes": 1,
                "strategy": "auto",
                "limit_predict_batches": None,
            }
            return super().instantiate_trainer(**{**kwargs, **fixed})

    return ExplainCLI


def run_explain(args: list[str], cli_class: type) -> int:
    """``bilatcf explain``: predict on the chosen pairs, then write the ROC curve and the gallery."""
    out = option(args, "--out")
    if not any(arg in ("-h", "--help") for arg in args):
        if not option(args, "--ckpt_path"):
            raise ConfigError(
                "bilatcf explain needs --ckpt_path: a checkpoint file, or best / last for the latest run under "
                "--trainer.default_root_dir (default runs/). `bilatcf explain --help` lists the options."
            )
        if not out:
            raise ConfigError("bilatcf explain needs --out DIR: the folder receiving the panels and index.html.")
        if Path(out).exists() and not Path(out).is_dir():
            raise ConfigError(f"--out {out} is a file, not a folder: give a folder for the panels and index.html.")
    cli = build_explain_cli(cli_class)(args)
    config, out = cli.config, Path(cli.config.out)
    try:
        loader = explain_loader(cli.datamodule, config.split, config.num_pairs)
    except DataError as exc:
        raise DataError(f"bilatcf explain --split {config.split}: {exc}") from None
    with warnings.catch_warnings():
        # A full training checkpoint holds callback states this predict-only trainer has no use for.
        warnings.filterwarnings("ignore", message=r"Be aware that when using `ckpt_path`, callbacks")
        cli.trainer.predict(cli.model, dataloaders=loader, ckpt_path=config.ckpt_path, return_predictions=False)
    pairs = cli.writer.pairs
    auc = write_roc(pairs, out / "roc.png")
    page = gallery_html(
        pairs,
        model=getattr(cli.model, "model_name", type(cli.model).__name__),
        checkpoint=str(config.ckpt_path),
        data=describe_data(cli.datamodule),
        split=config.split,
        score=score_name(cli.model),
        auc=auc,
    )
    (out / "index.html").write_text(page, encoding="utf-8")
    which = "the train, val and test splits" if config.split == "all" else f"the {config.split} split"
    print(f"explain: {len(pairs)} pairs of {which}: {out / 'index.html'}")
    return 0


def write_roc(pairs: list[ShownPair], path: Path) -> float | None:
    """The ROC curve of the pairs shown (``path``) and its AUC; None (and no file) unless both classes are known."""
    labels = torch.tensor([pair.label for pair in pairs], dtype=torch.long)
    scores = torch.tensor([pair.score for pair in pairs], dtype=torch.float32)
    path.unlink(missing_ok=True)  # a previous gallery's curve would describe other pairs
    known = labels[labels >= 0]
    if known.unique().numel() < 2:
        return None
    from torchmetrics.functional.classification import binary_auroc

    roc_figure(scores, labels, path)
    return float(binary_auroc(scores[labels >= 0], known, thresholds=None))


def describe_data(datamodule: pl.LightningDataModule) -> str:
    """The data in one line: the DataModule, its source and the options that say which pairs these are."""
    from bilatcf.checkpoints import data_config

    config = data_config(datamodule) or {"class_path": type(datamodule).__name__, "init_args": {}}
    keys = ("source", "manifest", "preset", "task", "image_size", "num_patients", "num_images", "fold", "split_seed")
    shown = [f"{key}={value}" for key, value in config["init_args"].items() if key in keys and value is not None]
    return f"{config['class_path'].rsplit('.', 1)[-1]}({', '.join(shown)})"


_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; }
table.header td { padding: 0.15em 1em 0.15em 0; vertical-align: top; }
.pair { border-top: 1px solid #ccc; padding: 0.8em 0; }
.pair h2 { font-size: 1.05em; margin: 0 0 0.4em 0; }
.pair img, .roc img { max-width: 100%; height: auto; }
.positive { color: #b00; }
"""


def gallery_html(
    pairs: list[ShownPair], model: str, checkpoint: str, data: str, split: str, score: str, auc: float | None
) -> str:
    """``index.html``: a header (model, checkpoint, data, split, pairs, AUC), the ROC curve and one entry per pair."""
    escape = html.escape
    auc_text = (
        f"{auc:.3f} (of the {len(pairs)} pairs shown)"
        if auc is not None and math.isfinite(auc)
        else "not defined: the pairs shown do not have both known classes"
    )
    header = [
        ("model", model),
        ("checkpoint", checkpoint),
        ("data", data),
        ("split", split),
        ("pairs shown", str(len(pairs))),
        ("AUC", auc_text),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>bilatcf explain: {escape(model)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>bilatcf explain: {escape(model)}</h1>",
        '<table class="header">',
        *(f"<tr><td>{escape(key)}</td><td>{escape(value)}</td></tr>" for key, value in header),
        "</table>",
    ]
    if auc is not None:
        parts.append('<div class="roc"><img src="roc.png" alt="ROC curve of the pairs shown" width="400"></div>')
    for index, pair in enumerate(pairs):
        ids = pair.ids
        name = " ".join(v for v in (ids["patient_id"], ids["laterality"], ids["view"]) if v) or ids["image_id"]
        label = str(pair.label) if pair.label >= 0 else "unknown"
        css = ' class="positive"' if pair.label == 1 else ""
        value = f"{pair.score:.3f}" if score == "p" else f"{pair.score:.4g}"
        images = [f"{what} {escape(ids[key])}" for what, key in (("target", "image_id"), ("reference", "reference_id"))]
        detail = ", ".join([image for image in images if not image.endswith(" ")] + [f"split {escape(pair.split)}"])
        parts += [
            f'<div class="pair" id="pair-{index}">',
            f"<h2>{index}. {escape(name)}: <span{css}>label {label}</span>, {escape(score)} = {value} "
            f"(predicted {pair.pred})</h2>",
            f"<div>{detail}</div>",
            f'<img src="{escape(pair.file)}" alt="panel of pair {index}: {escape(name)}">',
            "</div>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
