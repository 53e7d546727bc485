"""pyexp's API and semantics, on coralx's engine: change ``import pyexp`` to
``import coralx.pyexp as pyexp`` (or ``from coralx.pyexp import ...``) and a pyexp script
behaves as pyexp documents it.

>>> import coralx.pyexp as pyexp
>>> @pyexp.experiment(name="mnist")
... def experiment(config):
...     return {"accuracy": 0.9 + config.learning_rate}
>>> @experiment.configs
... def configs():
...     return [{"name": "fast", "learning_rate": 0.01}, {"name": "slow", "learning_rate": 0.001}]
>>> if __name__ == "__main__":
...     experiment.run()     # --executor, --timestamp, --no-timestamp, --report, --rerun, ...

Where pyexp's semantics differ from coralx's own API they are options of the one engine
(:mod:`coralx.sweeps`), chosen here: a plain dict in ``merge``/``sweep`` replaces (only dotted
keys update one nested value); an unnamed variation keeps the base name; ``sweep(cfgs, [])``
gives an axis of length 0; glob and dict filters keep the sweep's shape; the experiment's
function travels to the executor's processes by value (cloudpickle), so functions defined in a
notebook or inside another function run in a subprocess too. Every configuration is a coralx
run (record, lineage, caching by config hash, code snapshot), and ``--timestamp`` names the
sweep. Results are JSON (``result.json`` in the config's ``out`` folder, and the run's record),
never a pickle.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ..sweeps import config as _config
from ..sweeps.config import Config
from ..sweeps.registry import build, register
from ..sweeps.tensor import Tensor
from .executors import (
    Executor,
    ForkExecutor,
    InlineExecutor,
    RayExecutor,
    SubprocessExecutor,
    get_executor,
)
from .experiment import Experiment, experiment

if TYPE_CHECKING:
    from ..logger import Logger, LogReader

__all__ = [
    "Config",
    "Executor",
    "ExecutorName",
    "Experiment",
    "ForkExecutor",
    "InlineExecutor",
    "LogReader",
    "Logger",
    "RayExecutor",
    "SubprocessExecutor",
    "Tensor",
    "build",
    "experiment",
    "get_executor",
    "load_config",
    "merge",
    "register",
    "sweep",
]

ExecutorName = Literal["inline", "subprocess", "fork", "ray"]


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> Config:
    """``base`` updated by ``update``: a value replaces, a dotted key updates one nested value.

    >>> merge({"mlp": {"width": 32, "depth": 2}}, {"mlp.width": 64})
    {'mlp': {'width': 64, 'depth': 2}}
    >>> merge({"mlp": {"width": 32, "depth": 2}}, {"mlp": {"width": 64}})
    {'mlp': {'width': 64}}
    """
    return _config.merge(base, update, deep=False)


def sweep(configs: Any, variations: Sequence[Mapping[str, Any]]) -> Tensor[Config]:
    """The cartesian product of ``configs`` and ``variations``, with pyexp's rules: names join
    with ``_``, an unnamed variation keeps the base name, a plain dict value replaces, and no
    variations gives an axis of length 0. The result is a :class:`Tensor` of configs."""
    out = _config.sweep(configs, variations, deep=False, name_from_values=False, allow_empty=True)
    return Tensor(list(out), out.shape, keep_shape=True)


def load_config(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> Config:
    """Load YAML (or TOML) configs, later files and ``imports:`` overriding earlier ones, with
    pyexp's merge rule (see :func:`merge`)."""
    return _config.load_config(paths, deep=False)


def __getattr__(name: str) -> Any:
    if name in ("Logger", "LogReader"):
        from .. import logger

        return getattr(logger, name)
    raise AttributeError(f"module 'coralx.pyexp' has no attribute {name!r}")
