"""bilatcf: bilateral counterfactual methods for mammography, one PyTorch Lightning model zoo."""

from bilatcf.registry import create_model, list_models, register_model

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "BilateralDataModule",
    "UnilateralDataModule",
    "create_model",
    "list_models",
    "register_model",
]


def __getattr__(name: str):
    # The DataModules pull in Lightning: import them on first use so `import bilatcf` stays light.
    if name in ("BilateralDataModule", "UnilateralDataModule"):
        from bilatcf.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module 'bilatcf' has no attribute {name!r}")
