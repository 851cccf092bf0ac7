"""User-facing errors.

Every error raised on bad input is a :class:`BilatcfError`: the CLI prints its message as one paragraph (no traceback
wall), so a message must say what was wrong, where (file, row, field) and what to do about it.
"""


class BilatcfError(Exception):
    """Base class of all errors that speak to the user."""


class DataError(BilatcfError):
    """Bad data: a manifest row, an image file, a batch that breaks the data contract."""


class ConfigError(BilatcfError):
    """A bad option or combination of options (model name, backbone, weights file, checkpoint)."""


class TrainingDivergedError(BilatcfError):
    """A loss became NaN or Inf: training stops before a garbage checkpoint is written."""


class MissingDependencyError(BilatcfError):
    """An optional dependency is needed for the requested feature."""

    def __init__(self, package: str, feature: str, extra: str | None = None):
        hint = f"pip install 'bilatcf[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{feature} needs the package '{package}', which is not installed. Install it with: {hint}")
