"""Model registry: one lowercase name per method, used for the folder, YAML, ``--model`` value and docs page.

Registration happens on the registry's first use, which imports the methods listed in ``bilatcf/models/__init__.py``
(explicitly, in order), so the registry's content is deterministic. Registering a name twice is an error (two models
answering to one name would make runs ambiguous).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from bilatcf.errors import ConfigError

if TYPE_CHECKING:
    from bilatcf.models.base import BilateralModule

_MODELS: dict[str, type[BilateralModule]] = {}
T = TypeVar("T")


def register_model(name: str) -> Callable[[T], T]:
    """Class decorator that registers a :class:`BilateralModule` under ``name`` (lowercase)."""
    if name != name.lower():
        raise ValueError(f"model names are lowercase, got {name!r}")

    def decorator(cls: T) -> T:
        if name in _MODELS and _MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered by {_MODELS[name].__qualname__}")
        _MODELS[name] = cls  # type: ignore[assignment]
        cls.model_name = name  # type: ignore[attr-defined]
        return cls

    return decorator


def _ensure_loaded() -> None:
    from bilatcf.models import import_all

    import_all()  # registers every model


def list_models(include_hidden: bool = False) -> list[str]:
    """Names of the registered models, sorted; ``include_hidden`` adds the hidden ones (the template)."""
    _ensure_loaded()
    return sorted(name for name, cls in _MODELS.items() if include_hidden or not cls.hidden)


def get_model_class(name: str) -> type[BilateralModule]:
    """The class registered under ``name``; an unknown name lists the valid ones."""
    _ensure_loaded()
    key = name.lower()
    if key not in _MODELS:
        raise ConfigError(f"unknown model {name!r}. Valid models: {', '.join(sorted(_MODELS))} (see `bilatcf list`).")
    return _MODELS[key]


def create_model(name: str, **kwargs) -> BilateralModule:
    """Build a registered model; ``None`` keyword arguments are dropped so the class defaults apply."""
    return get_model_class(name)(**{k: v for k, v in kwargs.items() if v is not None})
