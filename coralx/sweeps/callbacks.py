"""Callbacks that watch a run: early stopping, checkpoints, and the base to write your own.

>>> @coralx.experiment(callbacks=[
...     coralx.EarlyStopping("val_loss", patience=3, min_delta=1e-3, mode="min"),
...     coralx.Checkpoint(every=5, metric="val_loss", mode="min", keep_best=2),
... ])
... def train(config, run):
...     for epoch in range(config.epochs):
...         run.log("val_loss", evaluate(), step=epoch)
...         run.checkpoint(weights, step=epoch)   # committed when the Checkpoint says so
...         if run.should_stop:
...             break

Callbacks are created in the script, so each process that runs a configuration gets fresh
copies (``fresh()``): state never leaks from one configuration to the next.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping

# Not `from typing import ...`: importing typing is a measurable part of a child's start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .run import Run

__all__ = ["Callback", "Checkpoint", "EarlyStopping"]


class Callback:
    """Base class: override the events you need. Every method does nothing by default."""

    def fresh(self) -> Callback:
        """A copy with no state, for one configuration."""
        return copy.deepcopy(self)

    def on_start(self, run: Run) -> None:
        """The run is about to call the experiment function."""

    def on_log(self, run: Run, name: str, value: float, step: int | None) -> None:
        """A metric was logged."""

    def on_checkpoint(self, run: Run, weights: Mapping[str, Any], step: int) -> None:
        """The run offered its weights at ``step`` (``run.checkpoint``)."""

    def on_end(self, run: Run, status: str) -> None:
        """The experiment function returned (``completed``) or raised (``failed``)."""


def _better(value: float, best: float | None, mode: str, margin: float) -> bool:
    if best is None:
        return True
    return value < best - margin if mode == "min" else value > best + margin


def _check_mode(mode: str) -> str:
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', not {mode!r}")
    return mode


class EarlyStopping(Callback):
    """Set ``run.should_stop`` once ``metric`` has not improved for ``patience`` logs.

    An improvement must beat the best so far by more than ``min_delta`` (absolute; with
    ``relative=True`` a fraction of the best, as in "0.1 %" = ``min_delta=0.001``).
    """

    def __init__(
        self,
        metric: str,
        patience: int = 5,
        min_delta: float = 0.0,
        mode: str = "min",
        relative: bool = False,
    ) -> None:
        if patience < 1:
            raise ValueError("patience must be at least 1")
        self.metric = metric
        self.patience = patience
        self.min_delta = min_delta
        self.mode = _check_mode(mode)
        self.relative = relative
        self.best: float | None = None
        self.best_step: int | None = None
        self.waited = 0
        self.stopped_step: int | None = None

    def on_log(self, run: Run, name: str, value: float, step: int | None) -> None:
        if name != self.metric or math.isnan(value):
            return
        margin = self.min_delta * abs(self.best) if self.relative and self.best else self.min_delta
        if _better(value, self.best, self.mode, margin):
            self.best, self.best_step, self.waited = value, step, 0
            return
        self.waited += 1
        if self.waited >= self.patience and self.stopped_step is None:
            self.stopped_step = step
            run.should_stop = True
            run["early_stopping"] = {
                "metric": self.metric,
                "stopped_step": step,
                "best": self.best,
                "best_step": self.best_step,
            }


class Checkpoint(Callback):
    """Commit the weights offered by ``run.checkpoint(weights, step)`` every ``every`` steps.

    With ``metric``, a checkpoint is committed only when it ranks among the best ``keep_best``
    so far by the metric's latest logged value, and the run's final weight commit
    (``commit_hash`` of its record, what ``coralx checkout <experiment id>`` returns) is the
    best checkpoint. The ranked list is kept in the record's data under ``checkpoints``.
    Commits are history and are never deleted: "keep" means the worse ones are never written.
    """

    def __init__(
        self,
        every: int = 1,
        metric: str | None = None,
        mode: str = "min",
        keep_best: int | None = None,
        message: str = "{name} step {step}",
    ) -> None:
        if every < 1:
            raise ValueError("every must be at least 1")
        if keep_best is not None and keep_best < 1:
            raise ValueError("keep_best must be at least 1")
        self.every = every
        self.metric = metric
        self.mode = _check_mode(mode)
        self.keep_best = keep_best
        self.message = message
        self.kept: list[dict[str, Any]] = []

    def on_checkpoint(self, run: Run, weights: Mapping[str, Any], step: int) -> None:
        if step % self.every != 0:
            return
        value = run.latest(self.metric) if self.metric else None
        if self.metric and value is None:
            return  # nothing to rank it by yet
        if self.keep_best is not None and value is not None and not self._ranks(value):
            return
        commit = run.commit_weights(weights, message=self.message.format(name=run.name, step=step))
        entry = {"step": step, "commit": commit.commit_hash, "value": value}
        self.kept.append(entry)
        if self.metric:
            self.kept.sort(key=lambda e: e["value"], reverse=self.mode == "max")
        if self.keep_best is not None:
            del self.kept[self.keep_best :]
        run["checkpoints"] = list(self.kept)
        run.final_commit = self.kept[0]["commit"] if self.metric else commit.commit_hash

    def _ranks(self, value: float) -> bool:
        if self.keep_best is None or len(self.kept) < self.keep_best:
            return True
        worst = self.kept[-1]["value"]
        return _better(value, worst, self.mode, 0.0)
