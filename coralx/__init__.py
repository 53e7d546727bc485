"""coralx: a Git-integrated, versioned experiment store for machine learning.

>>> from coralx import Repository
>>> repo = Repository("./my-model", init=True)

Public names are imported on first use, so ``import coralx`` stays fast and pulls in none of
numpy, dulwich, git, pydantic or rich.
"""

from __future__ import annotations

import importlib

from ._version import __version__

# Not `from typing import ...`: importing typing is a measurable part of a child's start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .experiments import ExperimentStatus, ExperimentTracker
    from .graph import WeightCommit
    from .logger import Logger, LogReader
    from .repository import Repository

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "Repository": "coralx.repository",
    "WeightCommit": "coralx.graph",
    # the sweep runner, in the package coralx.sweeps
    "sweep": "coralx.sweeps.config",
    "experiment": "coralx.sweeps.experiment",
    "Config": "coralx.sweeps.config",
    "Run": "coralx.sweeps.run",
    "merge": "coralx.sweeps.config",
    "grid": "coralx.sweeps.config",
    "repeat": "coralx.sweeps.config",
    "load_config": "coralx.sweeps.config",
    "register": "coralx.sweeps.registry",
    "build": "coralx.sweeps.registry",
    "Verdict": "coralx.sweeps.verdict",
    "ResultSet": "coralx.sweeps.results",
    "EarlyStopping": "coralx.sweeps.callbacks",
    "Checkpoint": "coralx.sweeps.callbacks",
    "Executor": "coralx.sweeps.executors",
    "get_executor": "coralx.sweeps.executors",
    "ExperimentTracker": "coralx.experiments",
    "ExperimentStatus": "coralx.experiments",
    "Logger": "coralx.logger",
    "LogReader": "coralx.logger",
}

__all__ = [
    "Checkpoint",
    "Config",
    "EarlyStopping",
    "Executor",
    "ExperimentStatus",
    "ExperimentTracker",
    "LogReader",
    "Logger",
    "Repository",
    "ResultSet",
    "Run",
    "Verdict",
    "WeightCommit",
    "__version__",
    "build",
    "experiment",
    "get_executor",
    "grid",
    "load_config",
    "merge",
    "register",
    "repeat",
    "sweep",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'coralx' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
