"""Shared fixtures: a private cache folder, tiny synthetic data, and the registry-driven model cases.

Every registered model is a case, and so is every ablation YAML under ``configs/ablations/``: adding a model or an
ablation needs no test plumbing.
"""

from __future__ import annotations

import inspect
import os
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

# Caches (synthetic datasets, preprocessed images) go to a private folder, never to the user's ~/.cache.
os.environ.setdefault("BILATCF_CACHE", tempfile.mkdtemp(prefix="bilatcf-test-cache-"))

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "tiny.yaml"
#: Overrides that make any model tiny; each is passed only to constructors that accept it.
TINY_MODEL_OVERRIDES = {"backbone": "test_resnet", "output_stride": 16}


def model_cases() -> list[tuple[str, str, dict]]:
    """(case id, registry name, init_args) for every registered model (hidden ones included: the template and the
    harness models of tests/harness_models.py) and every ablation YAML."""
    import tests.harness_models  # noqa: F401  (registers the harness models)
    from bilatcf.registry import get_model_class, list_models

    cases = [(name, name, {}) for name in list_models(include_hidden=True)]
    for path in sorted((REPO / "configs" / "ablations").rglob("*.yaml")):
        model = yaml.safe_load(path.read_text())["model"]
        class_path = model["class_path"]
        name = next(
            n
            for n in list_models()
            if f"{get_model_class(n).__module__}.{get_model_class(n).__qualname__}" == class_path
            or class_path.endswith("." + get_model_class(n).__qualname__)
        )
        cases.append((f"{path.parent.name}/{path.stem}", name, dict(model.get("init_args") or {})))
    return cases


def tiny_kwargs(cls: type, init_args: dict) -> dict:
    """init_args plus the tiny overrides the class accepts (and its own ``test_config``, if it declares one)."""
    accepted = inspect.signature(cls.__init__).parameters
    tiny = {k: v for k, v in TINY_MODEL_OVERRIDES.items() if k in accepted}
    return {**init_args, **tiny, **getattr(cls, "test_config", {})}


def tiny_cli_overrides(cls: type, init_args: dict) -> list[str]:
    """The same as command-line options, for CLI tests."""
    args = []
    for key, value in tiny_kwargs(cls, init_args).items():
        text = str(value).lower() if isinstance(value, bool) else ("null" if value is None else str(value))
        args += [f"--model.{key}", text]
    return args


def random_images(seed: int, size: int = 2) -> torch.Tensor:
    """``size`` seeded U(0, 1) images of 64×32 (tiny model inputs for unit tests)."""
    return torch.rand(size, 1, 64, 32, generator=torch.Generator().manual_seed(seed))


def schedule_epochs(cls: type, init_args: dict) -> int:
    """Epochs that run every training phase of the tiny model once (1 for a model without stages)."""
    return sum(phase.epochs or 1 for phase in cls(**tiny_kwargs(cls, init_args)).training_phases())


#: The tiny unilateral toy data of models that declare a ``toy_preset``.
TOY_DATA = {"num_images": 40, "batch_size": 4}


def tiny_data_config(cls: type) -> dict:
    """The DataModule config (class_path + init_args) of a model's tiny data: toy data or tiny synthetic pairs."""
    if cls.toy_preset is not None:
        return {
            "class_path": "bilatcf.data.datamodule.UnilateralDataModule",
            "init_args": {"preset": cls.toy_preset, **TOY_DATA},
        }
    init_args = {"num_patients": 48, "image_size": [64, 32], "batch_size": 4, **cls.data_options}
    return {"class_path": "bilatcf.data.datamodule.BilateralDataModule", "init_args": init_args}


CASES = model_cases()
CASE_IDS = [c[0] for c in CASES]
BASE_CASES = [c for c in CASES if "/" not in c[0]]
BASE_CASE_IDS = [c[0] for c in BASE_CASES]


@pytest.fixture(scope="session")
def tiny_model_datamodule(tiny_datamodule_factory):
    """The tiny data a model class trains on in the tests (set up for fit)."""
    from bilatcf.data.datamodule import UnilateralDataModule

    def build(cls: type, **overrides):
        if cls.toy_preset is None:
            return tiny_datamodule_factory(cls.data_options, **overrides)
        datamodule = UnilateralDataModule(preset=cls.toy_preset, **{**TOY_DATA, **overrides})
        datamodule.setup("fit")
        return datamodule

    return build


@pytest.fixture(scope="session")
def tiny_datamodule_factory():
    """Build (and set up) a tiny synthetic BilateralDataModule; data options a model needs are applied."""
    from bilatcf.data.datamodule import BilateralDataModule

    def build(data_options: dict | None = None, **overrides):
        kwargs = {"num_patients": 48, "image_size": (64, 32), "batch_size": 4, **(data_options or {}), **overrides}
        datamodule = BilateralDataModule(**kwargs)
        datamodule.setup("fit")
        return datamodule

    return build
