"""What the framework adapters share: finding the store, and params JSON can hold."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..repository import Repository

__all__ = ["flatten_params", "json_params", "open_repository"]


def open_repository(repo: Repository | str | os.PathLike[str] | None) -> Repository:
    """``repo`` itself, the store at that path (created if missing), or the store at or
    above the current folder."""
    from ..repository import Repository

    if isinstance(repo, Repository):
        return repo
    if repo is None:
        return Repository.discover()
    return Repository(repo, init=True)


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as one level, keys joined with ``/`` (``{"a": {"b": 1}}`` -> ``a/b``),
    as Lightning's loggers flatten them.

    >>> flatten_params({"args": {"lr": 0.1}, "seed": 1})
    {'args/lr': 0.1, 'seed': 1}
    """
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten_params(value, name))
        else:
            out[name] = value
    return out


def json_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Flat params with every value JSON can hold kept and the rest (classes, tensors,
    callables, NaN) written as text, as Lightning's loggers do."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        out[str(key)] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()  # numpy and torch scalars
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        items = [_plain(v) for v in value]
        try:
            json.dumps(items, allow_nan=False)
            return items
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, type):
        return value.__name__
    return str(value)
