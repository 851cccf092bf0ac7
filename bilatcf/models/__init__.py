"""Every method of the zoo, one folder each, listed in :data:`METHODS`.

Importing this package imports no method, so that a method's ``network.py`` (pure PyTorch) imports without Lightning:
Python runs this file, and the method's package ``__init__``, before any module inside them. The registry calls
:func:`import_all` on first use, which imports every method's ``module.py`` in the order of :data:`METHODS`, so its
content stays deterministic. A method's package exports its LightningModule lazily (``bilatcf.models.cgn.CGN``
imports ``bilatcf.models.cgn.module`` on first access), so class paths in configs keep working.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

#: The method folders, in registration order. A new method is added here.
METHODS = (
    "_template",
    "abn",
    "anogan",
    "brgan",
    "cam",
    "cgn",
    "cvt",
    "cxgan",
    "cyclegan",
    "disasymnet",
    "early",
    "fanogan",
    "fixedpoint",
    "gf",
    "ham",
    "latefusion",
    "mil",
    "sbf",
    "sff",
    "vagan",
    "vanilla",
    "wang22",
    "wu",
)


def import_all() -> None:
    """Import every method's ``module.py``, which registers it (``@register_model``); a no-op once done."""
    for name in METHODS:
        importlib.import_module(f"{__name__}.{name}.module")


def lazy_exports(package: str, names: Sequence[str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of a method's package: ``names`` are read from ``<package>.module`` on first access.

    Args:
        package: the package's ``__name__``.
        names: the classes ``module.py`` defines that the package exports (its ``__all__``).
    """

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(f"{package}.module"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def __getattr__(name: str) -> Any:
    # `bilatcf.models.cgn` as an attribute, as the former eager imports provided it.
    if name in METHODS:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
