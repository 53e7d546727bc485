"""Classes registered by name and built from configs whose ``type`` key names them.

>>> @register
... class MLP:
...     def __init__(self, hidden_size: int = 256, num_layers: int = 2):
...         self.hidden_size, self.num_layers = hidden_size, num_layers
>>> model = build(MLP, {"type": "MLP", "hidden_size": 512, "num_layers": 4})
>>> model.hidden_size, build(MLP, {"type": "MLP"}, hidden_size=1024).hidden_size
(512, 1024)

``build(Base, cfg)`` checks that the class ``cfg["type"]`` names is ``Base`` or a subclass of
it; an instance passed instead of a config comes back as it is, after the same check. Configs
stay plain data (JSON): the registry is how a config names code, without pickling it.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, TypeVar, overload

from ..errors import InvalidConfig

__all__ = ["build", "register", "registered"]

T = TypeVar("T")

_REGISTRY: dict[str, type] = {}


@overload
def register(cls: type[T], *, name: str | None = None) -> type[T]: ...
@overload
def register(cls: None = None, *, name: str | None = None) -> Any: ...


def register(cls: type[T] | None = None, *, name: str | None = None) -> Any:
    """Register a class under its name (or ``name``), as a decorator: ``@register`` or
    ``@register(name="mlp")``. Registering another class under a taken name replaces it (a
    re-run notebook cell), and the last one wins."""

    def add(klass: type[T]) -> type[T]:
        if not isinstance(klass, type):
            raise InvalidConfig(f"register takes a class, not {type(klass).__name__}")
        _REGISTRY[name or klass.__name__] = klass
        return klass

    return add(cls) if cls is not None else add


def registered() -> dict[str, type]:
    """A copy of the registry: name -> class."""
    return dict(_REGISTRY)


def build(cls: type[T], config: Any = None, /, **overrides: Any) -> T:
    """An instance of ``cls`` (or of the registered subclass ``config["type"]`` names), made with
    the config's other keys as keyword arguments, ``overrides`` winning over them."""
    if isinstance(config, cls) and not isinstance(config, Mapping):
        return config
    if config is not None and not isinstance(config, Mapping):
        raise InvalidConfig(
            f"build({cls.__name__}, ...) needs a config dict or a {cls.__name__} instance, "
            f"not {type(config).__name__}"
        )
    kwargs = {k: _plain(v) for k, v in (config or {}).items() if k != "type"}
    kwargs.update(overrides)
    target = _resolve(cls, (config or {}).get("type"))
    return target(**kwargs)


def _resolve(cls: type, type_name: Any) -> type:
    if type_name is None:
        return cls
    if not isinstance(type_name, str):
        raise InvalidConfig(f"a config's 'type' names a registered class, not {type_name!r}")
    target = _REGISTRY.get(type_name)
    if target is None:
        known = sorted(_REGISTRY)
        close = difflib.get_close_matches(type_name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InvalidConfig(
            f"no registered class named {type_name!r}{hint} "
            f"(registered: {', '.join(known) or 'none'}; add @register to the class)"
        )
    if not issubclass(target, cls):
        raise InvalidConfig(
            f"{type_name!r} is a {target.__name__}, which is not a {cls.__name__} "
            f"(nor a subclass of it)"
        )
    return target


def _plain(value: Any) -> Any:
    """Config values as the plain dicts and lists a constructor expects."""
    to_dict = getattr(value, "to_dict", None)
    if isinstance(value, Mapping) and callable(to_dict):
        return to_dict()
    return value
