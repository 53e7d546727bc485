"""pyexp's executors: the engine's own (``InlineExecutor``, ``SubprocessExecutor``,
``ForkExecutor``, ``RayExecutor``), and pyexp's ``Executor`` base for custom ones, whose
``run(fn, config, result_path)`` is adapted to the engine.

>>> class MyExecutor(Executor):
...     def run(self, fn, config, result_path):
...         return fn(config)
>>> experiment.run(executor=MyExecutor())

``fn(config)`` runs the configuration as a coralx run in the calling process (record, metrics,
result) and returns its result dict; it raises when the run failed. What ``run`` writes at
``result_path`` is the executor's own business: coralx keeps the returned value, as JSON, and
never reads a pickle back.
"""

from __future__ import annotations

import abc
import os
from typing import TYPE_CHECKING, Any

from ..sweeps import executors as _engine
from ..sweeps.executors import ForkExecutor, InlineExecutor, RayExecutor, SubprocessExecutor

if TYPE_CHECKING:
    from ..sweeps.task import Outcome, Task

__all__ = [
    "Executor",
    "ForkExecutor",
    "InlineExecutor",
    "RayExecutor",
    "SubprocessExecutor",
    "get_executor",
]


class Executor(abc.ABC):
    """pyexp's base class for custom executors: implement ``run(fn, config, result_path)``."""

    @abc.abstractmethod
    def run(self, fn: Any, config: Any, result_path: str) -> Any:
        """Run ``fn(config)`` somewhere and return its result."""


# The engine's executors are pyexp Executors too (``isinstance`` holds, as in pyexp).
for _cls in (InlineExecutor, SubprocessExecutor, ForkExecutor, RayExecutor):
    Executor.register(_cls)


class RunFailed(RuntimeError):
    """Raised by the ``fn`` a custom executor calls when the configuration's run failed."""


class CustomExecutor(_engine.Executor):
    """The engine's side of a pyexp custom executor: one configuration at a time, in this
    process, through the user's ``run(fn, config, result_path)``."""

    name = "custom"
    max_workers = 1
    in_process = True
    shares_memory = True

    def __init__(self, user: Executor) -> None:
        self.user = user

    def run(self, task: Task) -> Outcome:
        from ..sweeps._child import execute_task
        from ..sweeps.config import Config
        from ..sweeps.task import Outcome

        outcomes: list[Outcome] = []

        def fn(config: Any) -> Any:
            outcome = execute_task(task, prefer_local=True)
            outcomes.append(outcome)
            if outcome.status != "completed":
                message = (outcome.error or {}).get("message") or outcome.status
                raise RunFailed(f"{task.name} {outcome.status}: {message}")
            return outcome.result

        folder = task.out_dir or os.getcwd()
        result_path = os.path.join(folder, "result.pkl")
        try:
            self.user.run(fn, Config(task.config), result_path)
        except BaseException as exc:
            if outcomes:
                return outcomes[-1]
            if isinstance(exc, KeyboardInterrupt):
                raise
            return Outcome(
                status="failed",
                error={"type": type(exc).__name__, "message": str(exc)},
                experiment_id=task.experiment_id,
                crashed=True,  # no record was started: the runner writes the failed one
            )
        if not outcomes:
            return Outcome(
                status="failed",
                error={
                    "type": "RuntimeError",
                    "message": f"{type(self.user).__name__}.run never called fn(config)",
                },
                experiment_id=task.experiment_id,
                crashed=True,
            )
        return outcomes[-1]


def get_executor(name: Any = None) -> Any:
    """An executor by name (``"subprocess"``, ``"fork"``, ``"inline"``, ``"ray"``,
    ``"ray:<address>"``) or an instance, returned as it is."""
    if isinstance(name, Executor) and not isinstance(name, _engine.Executor):
        return name
    return _engine.get_executor(name)


def to_engine(spec: Any) -> Any:
    """What the engine runs for an executor given to pyexp's API."""
    if isinstance(spec, Executor) and not isinstance(spec, _engine.Executor):
        return CustomExecutor(spec)
    return _engine.get_executor(spec)
