"""bilatcf: bilateral counterfactual methods for mammography, one PyTorch Lightning model zoo.

The Python API (docs/api.md): :func:`create_model` / :func:`list_models`, the DataModules, and :func:`load`, which turns
a checkpoint into a :class:`Predictor` that scores image pairs.
"""

from bilatcf.registry import create_model, list_models, register_model

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "BilateralDataModule",
    "Prediction",
    "Predictor",
    "UnilateralDataModule",
    "create_model",
    "list_models",
    "load",
    "register_model",
]

# These pull in Lightning: they are imported on first use, so `import bilatcf` stays light.
_LAZY = {
    "BilateralDataModule": "bilatcf.data.datamodule",
    "UnilateralDataModule": "bilatcf.data.datamodule",
    "Prediction": "bilatcf.api",
    "Predictor": "bilatcf.api",
    "load": "bilatcf.api",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bilatcf' has no attribute {name!r}")
