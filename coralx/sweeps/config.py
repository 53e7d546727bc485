"""Configurations of a sweep: a dict with dot access, cartesian sweeps that keep their shape,
merging with dot-notation keys, config files with ``imports:``, repeats, and the config hash.

>>> base = Config({"name": "base", "lr": 0.1, "model": {"width": 32, "depth": 2}})
>>> base.model.width
32
>>> cfgs = sweep([base], [{"name": "w64", "model.width": 64}, {"name": "w128", "model.width": 128}])
>>> cfgs.shape, [c.name for c in cfgs]
((1, 2), ['base_w64', 'base_w128'])
>>> cfgs[0].model.depth   # dot-notation updates keep the rest of the nested dict
2
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence

from ..errors import InvalidConfig

# Not `from typing import ...`: importing typing is a measurable part of a child's start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

__all__ = [
    "RESERVED_KEYS",
    "Config",
    "ConfigList",
    "check_not_swept",
    "config_hash",
    "grid",
    "load_config",
    "merge",
    "parse_axes",
    "repeat",
    "replace_axis",
    "sweep",
    "validate_configs",
]

# Keys left out of the config hash: they name a configuration, they do not change what it computes.
RESERVED_KEYS = ("name",)


class Config(dict):
    """A dict whose keys are also attributes; nested dicts become :class:`Config` too.

    >>> c = Config({"optimizer": {"lr": 0.01}})
    >>> c.optimizer.lr == c["optimizer"]["lr"] == c.get_path("optimizer.lr")
    True
    >>> c.epochs = 3          # attribute writes are key writes
    >>> c["epochs"]
    3
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, _wrap(value))

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(
                f"Config has no attribute {key!r} (its keys: {', '.join(sorted(self)) or 'none'})"
            ) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        try:
            del self[key]
        except KeyError:
            raise AttributeError(key) from None

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def copy(self) -> Config:
        import json

        return Config(json.loads(json.dumps(self)))

    def get_path(self, path: str, default: Any = None) -> Any:
        """The value at a dot path (``"model.width"``), or ``default``."""
        node: Any = self
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def to_dict(self) -> dict[str, Any]:
        """A plain-dict deep copy (what is stored in records)."""
        return _unwrap(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Config, (self.to_dict(),))


# Scalars are checked by exact type first: isinstance against the Mapping ABC is slow, and a
# sweep calls these for every value of every configuration.
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _wrap(value: Any) -> Any:
    kind = type(value)
    if kind in _SCALARS or kind is Config:
        return value
    if isinstance(value, Mapping):
        return Config(value)
    if kind is list:
        return [_wrap(v) for v in value]
    return value


def _unwrap(value: Any) -> Any:
    """Plain data of exactly the built-in types: a subclass of a scalar (``numpy.float64``,
    an ``IntEnum``) becomes its base type, as JSON would write it. ``marshal``, which carries
    tasks and outcomes between processes, would otherwise store a numpy float as its bytes."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict or kind is Config or isinstance(value, Mapping):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_unwrap(v) for v in value]
    for base in (bool, int, float, str):
        if isinstance(value, base):
            return base(value)
    return value


class ConfigList(list[Config]):
    """A flat list of configurations that remembers the sweep's shape (``shape``: a tuple whose
    product is the length). Results come back in the same shape.

    A list made by :func:`sweep` or :func:`repeat` also remembers how (``_origin``), so one of
    its axes can be replaced (:func:`replace_axis`, ``--set-axis``) and the rest rebuilt."""

    #: ("sweep", parent, variations) or ("repeat", parent, (n, seed)); None for a plain list.
    _origin: tuple[str, ConfigList, Any] | None = None

    def __init__(self, items: Iterable[Any] = (), shape: Sequence[int] | None = None) -> None:
        super().__init__(Config(c) for c in items)
        self._set_shape(shape)

    def _set_shape(self, shape: Sequence[int] | None) -> None:
        self.shape: tuple[int, ...] = tuple(shape) if shape is not None else (len(self),)
        if math.prod(self.shape) != len(self):
            raise InvalidConfig(f"a sweep of shape {self.shape} cannot hold {len(self)} configs")

    @classmethod
    def _of_fresh(cls, configs: list[Config], shape: Sequence[int] | None) -> ConfigList:
        """A list of Configs just built here and owned by nobody else: not copied again."""
        out = cls()
        out.extend(configs)
        out._set_shape(shape)
        return out


def as_config_list(configs: Any) -> ConfigList:
    """Accept a ConfigList, a list of dicts, or one dict (a sweep of shape ``()``)."""
    if isinstance(configs, ConfigList):
        return configs
    if isinstance(configs, Mapping):
        return ConfigList([configs], shape=())
    if isinstance(configs, Iterable) and not isinstance(configs, str | bytes):
        shape = getattr(configs, "shape", None)  # a Tensor of configs keeps its shape
        items = list(configs)
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise InvalidConfig(
                    f"configuration {i} is a {type(item).__name__}, not a dict; "
                    "a sweep is a list of dicts"
                )
        return ConfigList(items, shape=shape if isinstance(shape, tuple) else None)
    raise InvalidConfig(f"expected a dict or a list of dicts, got {type(configs).__name__}")


def merge(base: Mapping[str, Any], update: Mapping[str, Any], *, deep: bool = True) -> Config:
    """``base`` updated by ``update``. A dotted key (``"model.width"``) sets one value inside a
    nested dict, keeping its siblings. A plain dict value merges into the dict it meets
    (``deep=True``, coralx's rule) or replaces it whole (``deep=False``, pyexp's rule).

    >>> merge({"model": {"width": 32, "depth": 2}}, {"model.width": 64}).model
    {'width': 64, 'depth': 2}
    >>> merge({"model": {"width": 32, "depth": 2}}, {"model": {"width": 64}}).model
    {'width': 64, 'depth': 2}
    >>> merge({"model": {"width": 32, "depth": 2}}, {"model": {"width": 64}}, deep=False).model
    {'width': 64}
    """
    out = Config(_unwrap(base))
    for key, value in update.items():
        _set_merged(out, key, value, deep)
    return out


def _set_merged(target: Config, key: str, value: Any, deep: bool = True) -> None:
    if not isinstance(key, str):
        raise InvalidConfig(f"config keys must be strings, got {key!r}")
    head, dot, rest = key.partition(".")
    if dot:
        child = target.get(head)
        if not isinstance(child, Config):
            child = Config()
            target[head] = child
        _set_merged(child, rest, value, deep)
        return
    current = target.get(key)
    if isinstance(value, Mapping) and isinstance(current, Config) and deep:
        for k, v in value.items():
            _set_merged(current, k, v, deep)
    elif isinstance(value, Mapping):
        fresh = Config()
        for k, v in value.items():
            _set_merged(fresh, k, v, deep)
        target[key] = fresh
    else:
        target[key] = _unwrap(value)


def _variation_name(variation: Mapping[str, Any]) -> str:
    name = variation.get("name")
    if name is not None:
        return str(name)
    parts = [f"{k}={v}" for k, v in variation.items()]
    return ",".join(parts) or "default"


def sweep(
    configs: Any,
    variations: Sequence[Mapping[str, Any]],
    *,
    deep: bool = True,
    name_from_values: bool = True,
    allow_empty: bool = False,
) -> ConfigList:
    """The cartesian product of ``configs`` and ``variations``; the shape gains one axis.

    Names join with ``_`` (``base`` x ``w64`` -> ``base_w64``); a variation without a name is
    named from its values (``name_from_values=False``: it keeps the base name, as pyexp does).
    Variation keys may use dot notation to update nested values; a plain dict value merges
    (``deep``, see :func:`merge`). No variations is an error unless ``allow_empty`` (then the
    shape gains an axis of length 0, as pyexp's does).

    >>> cfgs = sweep([{"name": "exp"}],
    ...              [{"name": "lr0.1", "lr": 0.1}, {"name": "lr0.01", "lr": 0.01}])
    >>> cfgs = sweep(cfgs, [{"name": "e10", "epochs": 10}, {"name": "e100", "epochs": 100}])
    >>> cfgs.shape
    (1, 2, 2)
    """
    base = as_config_list(configs)
    if isinstance(variations, Mapping) or not isinstance(variations, Sequence):
        raise InvalidConfig("sweep() takes a list of variations (dicts) as its second argument")
    if not variations and not allow_empty:
        raise InvalidConfig("sweep() needs at least one variation")
    out: list[Config] = []
    for config in base:
        for variation in variations:
            if not isinstance(variation, Mapping):
                raise InvalidConfig(f"a variation must be a dict, got {variation!r}")
            merged = merge(config, {k: v for k, v in variation.items() if k != "name"}, deep=deep)
            if variation.get("name") is None and not name_from_values:
                if config.get("name") is not None:
                    merged["name"] = config["name"]
                out.append(merged)
                continue
            vname = _variation_name(variation)
            merged["name"] = f"{config['name']}_{vname}" if config.get("name") else vname
            out.append(merged)
    result = ConfigList._of_fresh(out, (*base.shape, len(variations)))
    result._origin = ("sweep", base, list(variations))
    return result


def grid(axes: Mapping[str, Sequence[Any]], base: Mapping[str, Any] | None = None) -> ConfigList:
    """One axis per key: the cartesian product of value lists, like a parameter grid.

    >>> grid({"lr": [0.1, 0.01], "model.width": [64, 128]}).shape
    (2, 2)
    """
    configs: ConfigList = ConfigList([base or {}], shape=())
    for key, values in axes.items():
        if isinstance(values, str | bytes) or not isinstance(values, Sequence):
            raise InvalidConfig(f"grid axis {key!r} needs a list of values, got {values!r}")
        short = key.rsplit(".", 1)[-1]
        configs = sweep(configs, [{"name": f"{short}{v}", key: v} for v in values])
    return configs


def repeat(configs: Any, n: int, *, seed: int | None = None) -> ConfigList:
    """Each configuration ``n`` times, on a new last axis, with distinct seeds.

    The ``r``-th copy gets ``repeat = r``, ``seed = base + r`` (``base`` is the config's own
    ``seed``, else ``seed``, else 0) and the name suffix ``_r{r}``, so the copies have
    distinct hashes and each is cached and resumed on its own.
    """
    if not isinstance(n, int) or n < 1:
        raise InvalidConfig(f"repeat needs a positive number of repeats, got {n!r}")
    base = as_config_list(configs)
    out: list[Config] = []
    for config in base:
        start = config.get("seed", seed if seed is not None else 0)
        if not isinstance(start, int):
            raise InvalidConfig(f"seed must be an integer to repeat with distinct seeds: {start!r}")
        for r in range(n):
            copy = merge(config, {"repeat": r, "seed": start + r})
            copy["name"] = f"{config['name']}_r{r}" if config.get("name") else f"r{r}"
            out.append(copy)
    result = ConfigList._of_fresh(out, (*base.shape, n))
    result._origin = ("repeat", base, (n, seed))
    return result


# -- overriding a sweep from the command line ------------------------------------------------

_MISSING = object()


def check_not_swept(configs: Sequence[Config], overrides: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidConfig` if an override (``--set KEY=VALUE``) sets a key whose value
    differs between configurations: it would silently collapse an axis of the sweep into one
    value, under names that still tell the old values."""
    for key in overrides:
        seen: dict[str, None] = {}
        for config in configs:
            value = config.get_path(key, _MISSING)
            seen.setdefault("(unset)" if value is _MISSING else canonical_json(value), None)
        if len(seen) > 1:
            shown = ", ".join(list(seen)[:5]) + (", ..." if len(seen) > 5 else "")
            raise InvalidConfig(
                f"--set {key}=... would override {key!r}, which this sweep varies ({shown}): "
                f"its {len(configs)} configurations would collapse into fewer runs under names "
                f"that no longer say what they ran. To replace the axis, use "
                f"--set-axis {key}=VALUE (or a JSON list of values)"
            )


def parse_axes(axes: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``{"hidden": [16, 32]}`` or ``{"hidden": 32}`` -> ``{"hidden": [16, 32]}`` / ``[32]``."""
    out: dict[str, list[Any]] = {}
    for key, values in axes.items():
        items = list(values) if isinstance(values, list | tuple) else [values]
        if not items:
            raise InvalidConfig(f"--set-axis {key} needs at least one value")
        out[key] = items
    return out


def replace_axis(configs: ConfigList, key: str, values: Sequence[Any]) -> ConfigList:
    """``configs`` with the axis that sets ``key`` replaced by one variation per value (named
    as :func:`grid` names them: ``hidden32``); the other axes are rebuilt around it.

    >>> cfgs = grid({"hidden": [16, 64], "lr": [0.1, 0.01]})
    >>> [c.name for c in replace_axis(cfgs, "hidden", [32])]
    ['hidden32_lr0.1', 'hidden32_lr0.01']
    """
    origin = configs._origin
    if origin is None:
        raise InvalidConfig(
            f"--set-axis {key}: no axis of this sweep sets {key!r} (axes are what coralx.sweep, "
            f"coralx.grid and coralx.repeat make); to set it in every configuration, use "
            f"--set {key}=VALUE"
        )
    kind, parent, arg = origin
    if kind == "sweep" and arg and all(key in v for v in arg):
        others = sorted({k for v in arg for k in v if k not in ("name", key)})
        if others:
            raise InvalidConfig(
                f"--set-axis {key}: the axis that sets {key!r} also sets {', '.join(others)}; "
                "change that axis in the configs function instead"
            )
        short = key.rsplit(".", 1)[-1]
        return sweep(parent, [{"name": f"{short}{v}", key: v} for v in values])  # as grid()
    rebuilt = replace_axis(parent, key, values)
    return sweep(rebuilt, arg) if kind == "sweep" else repeat(rebuilt, arg[0], seed=arg[1])


# -- hashing and validation ------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    import json

    return json.dumps(_unwrap(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_hash(config: Mapping[str, Any]) -> str:
    """16 hex digits of SHA-256 over the config's values in canonical JSON, without its name:
    renaming a configuration does not make it new; changing any value does."""
    import hashlib

    body = {k: v for k, v in config.items() if k not in RESERVED_KEYS}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()[:16]


def check_json(value: Any, where: str) -> None:
    """Raise :class:`InvalidConfig` naming the first value JSON cannot hold exactly."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return
    if kind is float and math.isfinite(value):
        return
    if isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidConfig(
                f"{where} is {value!r}, which JSON cannot hold; use null or a number"
            )
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidConfig(f"{where} has a non-string key {k!r}; JSON keys are strings")
            check_json(v, f"{where}.{k}")
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            check_json(v, f"{where}[{i}]")
        return
    raise InvalidConfig(
        f"{where} is a {type(value).__name__} ({value!r:.60}), which JSON cannot hold; "
        "configs hold plain data (numbers, strings, lists, dicts): build objects inside the run"
    )


def validate_configs(configs: ConfigList) -> ConfigList:
    """Give unnamed configs a name and check names are unique and values are JSON."""
    seen: dict[str, int] = {}
    for i, config in enumerate(configs):
        if not config.get("name"):
            config["name"] = f"config{i}"
        name = config["name"]
        if not isinstance(name, str):
            raise InvalidConfig(f"configuration {i} has a name that is not a string: {name!r}")
        if name in seen:
            raise InvalidConfig(
                f"two configurations are named {name!r} (numbers {seen[name]} and {i}); "
                "give each a distinct 'name'"
            )
        seen[name] = i
        check_json(config, f"config {name!r}")
    return configs


# -- files -----------------------------------------------------------------------------------


def load_config(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, deep: bool = True
) -> Config:
    """Load a YAML (``.yaml``/``.yml``) or TOML (``.toml``) config, or several merged in order.

    A file may list other files under ``imports:`` (paths relative to it); they are loaded
    first and the file's own keys, dotted ones included, override them (``deep``: how a plain
    dict value merges, see :func:`merge`).

    >>> load_config("experiment.yaml")        # imports base.yaml, then overrides it
    >>> load_config(["base.yaml", "overrides.toml"])
    """
    from pathlib import Path

    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    out = Config()
    for path in paths:
        out = merge(out, _load_file(Path(path).resolve(), (), deep), deep=deep)
    return out


def _read_config_text(path: Path) -> str:
    """The text of a config file, or :class:`InvalidConfig` saying why it is none."""
    if path.is_dir():
        raise InvalidConfig(f"{path} is a folder; give the path of a .yaml or .toml file")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise InvalidConfig(f"config file {path} does not exist") from None
    except OSError as exc:
        raise InvalidConfig(f"config file {path} cannot be read: {exc.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise InvalidConfig(f"{path} is larger than {MAX_CONFIG_BYTES >> 20} MiB: not a config")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidConfig(f"{path} is not UTF-8 text (byte {exc.start})") from None


def _load_file(path: Path, chain: tuple[Path, ...], deep: bool = True) -> Config:
    if path in chain:
        cycle = " -> ".join(p.name for p in (*chain, path))
        raise InvalidConfig(f"config imports form a cycle: {cycle}")
    data = _parse(path)
    imports = data.pop("imports", None) or []
    if isinstance(imports, str):
        imports = [imports]
    if not isinstance(imports, list):
        raise InvalidConfig(f"{path}: 'imports' must be a list of file paths")
    out = Config()
    for item in imports:
        found = _load_file((path.parent / str(item)).resolve(), (*chain, path), deep)
        out = merge(out, found, deep=deep)
    return merge(out, data, deep=deep)


MAX_CONFIG_BYTES = 16 << 20  # far above any hand-written config; a guard against a wrong file


def _parse(path: Path) -> dict[str, Any]:
    text = _read_config_text(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            raise InvalidConfig(f"{path}: unknown config format; use .yaml, .yml or .toml")
    except InvalidConfig:
        raise
    except RecursionError:
        raise InvalidConfig(f"{path} nests too deeply to be a config") from None
    except Exception as exc:  # each parser has its own error types; all mean "bad file"
        raise InvalidConfig(f"{path} is not valid {suffix[1:].upper()}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidConfig(f"{path} must hold a mapping at the top, not {type(data).__name__}")
    return data
