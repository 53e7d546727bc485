"""The seed's training callbacks, over the sweep engine's (:mod:`coralx.sweeps.callbacks`):

- ``EarlyStopping(env, patience, min_delta_percent)``: stop once the metric (``val_loss`` by
  default) has not improved by ``min_delta_percent`` % of its best for ``patience`` epochs;
- ``CheckpointCallback(interval, env)``: commit the weights every ``interval`` epochs as a
  weight commit linked to the run, and note it in the run's ``artifacts/checkpoint-<epoch>``;
- ``MetricsTracker(env)``: every metric into the run's ``logs/metrics.log`` (and the run);
- ``Callback``: the base class for your own (``on_start``, ``on_log``, ``on_checkpoint``,
  ``on_end``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from ....sweeps import callbacks as _engine

__all__ = ["Callback", "CheckpointCallback", "EarlyStopping", "MetricsTracker"]


def _run_env(run: Any) -> Any:
    """The Environment of the repeat ``run`` belongs to (set by Experiment.run)."""
    return getattr(run, "environment", None)


class Callback(_engine.Callback):
    """Base class of callbacks; ``env`` is the environment it was made with."""

    def __init__(self, env: Any = None) -> None:
        self.env = env


class EarlyStopping(_engine.EarlyStopping, Callback):
    def __init__(
        self,
        env: Any = None,
        patience: int = 5,
        min_delta_percent: float = 0.0,
        metric: str = "val_loss",
        mode: str = "min",
    ) -> None:
        _engine.EarlyStopping.__init__(
            self,
            metric,
            patience=patience,
            min_delta=min_delta_percent / 100.0,
            mode=mode,
            relative=True,
        )
        self.env = env
        self.min_delta_percent = min_delta_percent


class CheckpointCallback(_engine.Checkpoint, Callback):
    def __init__(
        self, interval: int = 1, env: Any = None, metric: str | None = None, mode: str = "min"
    ) -> None:
        _engine.Checkpoint.__init__(self, every=interval, metric=metric, mode=mode)
        self.env = env
        self.interval = interval

    def on_checkpoint(self, run: Any, weights: Mapping[str, Any], step: int) -> None:
        before = len(self.kept)
        super().on_checkpoint(run, weights, step)
        env = _run_env(run)
        if env is None or (
            len(self.kept) == before and not any(e["step"] == step for e in self.kept)
        ):
            return
        entry = next(e for e in self.kept if e["step"] == step)
        from ...._fs import atomic_write

        atomic_write(
            env.artifact_dir / f"checkpoint-{step}",
            json.dumps({"epoch": step, "commit": entry["commit"], "run": run.id}),
        )


class MetricsTracker(Callback):
    """Writes every logged metric as a line of JSON to the experiment's ``logs/metrics.log``
    (and a line to the run's ``logs/run.log``); the values are the run's metrics too."""

    def on_log(self, run: Any, name: str, value: float, step: int | None) -> None:
        env = _run_env(run)
        if env is None:
            return
        entry = {
            "time": round(time.time(), 3),
            "trial": getattr(run, "trial_name", None),
            "run": getattr(run, "repeat_number", None),
            "step": step,
            "metric": name,
            "value": value,
        }
        top = getattr(run, "experiment_environment", None) or env
        top.log_dir.mkdir(parents=True, exist_ok=True)
        with open(top.log_dir / "metrics.log", "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        env.logger.info("%s=%s at step %s", name, value, step)
