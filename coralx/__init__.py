"""coralx: a Git-integrated, versioned experiment store for machine learning.

>>> from coralx import Repository
>>> repo = Repository("./my-model", init=True)

Public names are imported on first use, so ``import coralx`` stays fast and pulls in none of
numpy, dulwich, git, pydantic or rich.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .experiments import ExperimentStatus, ExperimentTracker
    from .graph import WeightCommit
    from .logger import Logger, LogReader
    from .repository import Repository

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "Repository": "coralx.repository",
    "WeightCommit": "coralx.graph",
    "ExperimentTracker": "coralx.experiments",
    "ExperimentStatus": "coralx.experiments",
    "Logger": "coralx.logger",
    "LogReader": "coralx.logger",
}

__all__ = [
    "ExperimentStatus",
    "ExperimentTracker",
    "LogReader",
    "Logger",
    "Repository",
    "WeightCommit",
    "__version__",
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
