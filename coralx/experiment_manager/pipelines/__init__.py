"""``Pipeline``: a training workflow with callbacks.

Subclass it and write the training in ``run(config)``; report metrics with
``self.log_metrics({...}, step)``, offer weights with ``self.checkpoint(weights, step)`` and
stop when ``self.should_stop`` says so (an ``EarlyStopping`` callback sets it):

>>> class Train(Pipeline):
...     def run(self, config):
...         for epoch in range(config.epochs):
...             self.log_metrics({"val_loss": evaluate()}, step=epoch)
...             self.checkpoint(model_weights(), step=epoch)
...             if self.should_stop:
...                 break
...         return {"epochs": epoch + 1}

``Pipeline(env)`` becomes the environment's pipeline, which ``Experiment.run()`` runs once per
repeat of every trial. The base ``run`` trains nothing: it records the trial's settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .callbacks import Callback

__all__ = ["Pipeline"]


class Pipeline:
    """The seed's Pipeline: ``Pipeline(env).register_callback(cb)``."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.callbacks: list[Callback] = []
        #: The coralx run (``coralx.Run``) of the repeat being run, while ``run`` executes.
        self.run_context: Any = None
        env.pipeline = self

    def register_callback(self, callback: Callback) -> Pipeline:
        if not isinstance(callback, Callback):
            raise TypeError(
                f"{type(callback).__name__} is not a Callback; subclass "
                "coralx.experiment_manager.pipelines.callbacks.Callback"
            )
        self.callbacks.append(callback)
        return self

    def run(self, config: Any) -> Mapping[str, Any] | None:
        """The training of one repeat; override it. Returns a result dict (or None)."""
        return None

    # -- what run() calls ------------------------------------------------------------------------

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log metrics into the run (callbacks see each value)."""
        self._run().log_metrics(dict(metrics), step=step)

    def checkpoint(self, weights: Mapping[str, Any], step: int) -> None:
        """Offer the weights at ``step``; a ``CheckpointCallback`` commits them at its interval."""
        self._run().checkpoint(weights, step)

    @property
    def should_stop(self) -> bool:
        return bool(getattr(self.run_context, "should_stop", False))

    def _run(self) -> Any:
        if self.run_context is None:
            raise RuntimeError("log_metrics and checkpoint work while Experiment.run() runs")
        return self.run_context
