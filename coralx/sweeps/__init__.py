"""The sweep runner: experiments run once per configuration, each an experiment record.

>>> import coralx
>>> cfgs = coralx.sweep([{"name": "base", "lr": 0.1}], [{"name": "w64", "model.width": 64}])

``coralx.sweep`` is :func:`coralx.sweeps.config.sweep`; this package is ``coralx.sweeps``.
Names are imported on first use, so a child process running one configuration imports only
what it needs.
"""

from __future__ import annotations

import importlib

# Not `from typing import ...`: importing typing is a measurable part of a child's start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._child import execute_task
    from .callbacks import Callback, Checkpoint, EarlyStopping
    from .config import Config, ConfigList, config_hash, grid, load_config, merge, repeat, sweep
    from .executors import (
        Executor,
        ForkExecutor,
        InlineExecutor,
        RayExecutor,
        SubprocessExecutor,
        get_executor,
    )
    from .experiment import SweepExperiment, experiment
    from .record import SweepRecord, find_sweep, list_sweeps
    from .results import Result, ResultSet
    from .run import Run
    from .runner import SweepResult, results_of, run_sweep
    from .task import Outcome, Task
    from .verdict import Verdict, to_verdict

_LAZY: dict[str, str] = {
    "Config": "config",
    "ConfigList": "config",
    "config_hash": "config",
    "grid": "config",
    "load_config": "config",
    "merge": "config",
    "repeat": "config",
    "sweep": "config",
    "Result": "results",
    "ResultSet": "results",
    "Executor": "executors",
    "ForkExecutor": "executors",
    "InlineExecutor": "executors",
    "RayExecutor": "executors",
    "SubprocessExecutor": "executors",
    "get_executor": "executors",
    "Callback": "callbacks",
    "Checkpoint": "callbacks",
    "EarlyStopping": "callbacks",
    "SweepExperiment": "experiment",
    "Verdict": "verdict",
    "to_verdict": "verdict",
    "experiment": "experiment",
    "Run": "run",
    "SweepResult": "runner",
    "results_of": "runner",
    "run_sweep": "runner",
    "SweepRecord": "record",
    "find_sweep": "record",
    "list_sweeps": "record",
    "Outcome": "task",
    "Task": "task",
    "execute_task": "_child",
}

__all__ = [
    "Callback",
    "Checkpoint",
    "Config",
    "ConfigList",
    "EarlyStopping",
    "Executor",
    "ForkExecutor",
    "InlineExecutor",
    "Outcome",
    "RayExecutor",
    "Result",
    "ResultSet",
    "Run",
    "SubprocessExecutor",
    "SweepExperiment",
    "SweepRecord",
    "SweepResult",
    "Task",
    "Verdict",
    "config_hash",
    "execute_task",
    "experiment",
    "find_sweep",
    "get_executor",
    "grid",
    "list_sweeps",
    "load_config",
    "merge",
    "repeat",
    "results_of",
    "run_sweep",
    "sweep",
    "to_verdict",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'coralx.sweeps' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
