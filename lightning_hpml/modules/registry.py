"""Name -> builder registry for the model zoo (timm-style ``register_model`` / ``create_model``).

Size functions are registered by their function name, so YAML configs and tests can refer to ``"fadnet"`` or
``"fadnet_w025"`` and tests iterate every registered model.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["create_model", "is_model", "list_models", "register_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(fn: F) -> F:
    """Register ``fn`` under its function name; registering the same name twice is an error."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice ({_MODELS[name].__module__} and {fn.__module__})")
    _MODELS[name] = fn
    return fn


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; keyword arguments override the size's defaults (``None`` values are dropped)."""
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(sorted(_MODELS))}")
    return _MODELS[name](**{k: v for k, v in kwargs.items() if v is not None})


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    """Sorted names of registered models matching a shell-style ``pattern``.

    ``family`` keeps only models defined under ``lightning_hpml.modules.<family>`` (e.g. ``"stereo"``), as timm's
    ``list_models(module=...)`` does; tools that build every model of one task use it.
    """
    prefix = None if family is None else f"lightning_hpml.modules.{family}"
    return sorted(
        n
        for n, fn in _MODELS.items()
        if fnmatch.fnmatch(n, pattern)
        and (prefix is None or fn.__module__ == prefix or fn.__module__.startswith(prefix + "."))
    )


def is_model(name: str) -> bool:
    return name in _MODELS
