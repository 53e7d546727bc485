"""``insert_value`` (the ``"?"`` placeholder) and ``multiply`` (a cartesian product of configs),
as the seed has them, over coralx's config engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["PLACEHOLDER", "insert_value", "multiply"]

PLACEHOLDER = "?"


def insert_value(config: Any, value: Any, placeholder: str = PLACEHOLDER) -> Any:
    """A copy of ``config`` with every ``"?"`` value replaced by ``value``.

    >>> insert_value(OmegaConf.create({"learning_rate": "?", "batch_size": 32}), 0.001)
    {'learning_rate': 0.001, 'batch_size': 32}
    """
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(config) if OmegaConf.is_config(config) else config
    return OmegaConf.create(_replace(plain, value, placeholder))


def _replace(node: Any, value: Any, placeholder: str) -> Any:
    if isinstance(node, Mapping):
        return {k: _replace(v, value, placeholder) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_replace(v, value, placeholder) for v in node]
    return value if node == placeholder else node


def multiply(*groups: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Every combination of one config from each group, merged in order (later keys win).

    >>> len(multiply([{"model": "mlp"}, {"model": "cnn"}], [{"lr": 0.1}, {"lr": 0.01}]))
    4
    """
    from omegaconf import OmegaConf

    from ...sweeps.config import _unwrap, sweep

    if not groups:
        return []
    configs: Any = [_plain(c) for c in groups[0]]
    for group in groups[1:]:
        configs = list(sweep(configs, [_plain(c) for c in group], name_from_values=False))
    return [OmegaConf.create(_unwrap(c)) for c in configs]


def _plain(config: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    if OmegaConf.is_config(config):
        return dict(OmegaConf.to_container(config))  # type: ignore[arg-type]
    return dict(config)
