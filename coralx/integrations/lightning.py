"""PyTorch Lightning: :class:`CoralxLogger`, a ``lightning.pytorch.loggers.Logger``.

>>> from coralx.integrations.lightning import CoralxLogger
>>> logger = CoralxLogger(name="mnist", log_model="all")
>>> trainer = L.Trainer(logger=logger, callbacks=[ModelCheckpoint(monitor="val_loss")])
>>> trainer.fit(model)                       # doctest: +SKIP
>>> logger.run.commit_hash                   # the best checkpoint's weight commit

Metrics go to a coralx run (its id is the logger's ``version``); hyperparameters become its
params, flattened as Lightning's own loggers flatten them (``{"a": {"b": 1}}`` -> ``a/b``).
``log_model`` is as in Lightning's ``WandbLogger``:

* ``False``: no weights are stored (checkpoints are still listed in the run's data);
* ``"all"``: every checkpoint becomes a weight commit as it is saved;
* ``True``: the checkpoints ``ModelCheckpoint`` keeps are committed at the end of the fit
  (all as they are saved when ``save_top_k == -1``). Until then a CPU copy of each is held,
  as coralx never reads a ``.ckpt`` file: a checkpoint's weights are taken from the module in
  memory when Lightning saves it, so nothing is ever unpickled.

The run's ``commit_hash`` is the best checkpoint's commit (``ModelCheckpoint(monitor=...)``),
else the last one. A fit that raises ends the run FAILED with the error (Ctrl-C: CANCELLED).
A fit resumed from a checkpoint (``trainer.fit(model, ckpt_path=...)``) records a new run whose
parent is the run that saved that checkpoint.
"""

from __future__ import annotations

import os
import sys
import traceback
from argparse import Namespace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from ..errors import InvalidValue
from ._common import json_params, open_repository

if TYPE_CHECKING:
    from lightning.pytorch.callbacks import ModelCheckpoint

    from ..experiments import Experiment, ExperimentTracker
    from ..repository import Repository

__all__ = ["CoralxLogger"]

_TAG = "lightning"


class CoralxLogger(Logger):
    """Log a Lightning fit to a coralx run, and its checkpoints as weight commits.

    ``repo`` is a :class:`~coralx.Repository` or the path of one (created if missing); by
    default the store at or above the current folder. ``parent`` names the run this one
    continues (found by itself when the fit resumes from a checkpoint a coralx run saved).
    """

    def __init__(
        self,
        name: str = "lightning",
        *,
        repo: Repository | str | os.PathLike[str] | None = None,
        tags: list[str] | None = None,
        description: str | None = None,
        log_model: bool | Literal["all"] = False,
        parent: str | None = None,
        save_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        if log_model not in (False, True, "all"):
            raise InvalidValue(f"log_model is False, True or 'all', not {log_model!r}")
        self._name = name
        self._repo_arg = repo
        self._tags = [_TAG, *(tags or [])]
        self._description = description
        self._log_model = log_model
        self._parent = parent
        self._save_dir = None if save_dir is None else os.fspath(save_dir)
        self._params: dict[str, Any] = {}
        self._version: str | None = None
        self._tracker: ExperimentTracker | None = None
        self._module: Any = None
        self._checkpoints: list[dict[str, Any]] = []
        self._commits: dict[str, str] = {}  # checkpoint path -> weight commit
        self._held: dict[str, tuple[dict[str, Any], Any]] = {}  # path -> (entry, CPU copy)
        self._callbacks: dict[int, ModelCheckpoint] = {}
        self._ended: Experiment | None = None

    # -- what Lightning asks of a logger ----------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        """The run's id, handed out before the run starts (checkpoint folders use it)."""
        if self._version is None:
            from ..ids import new_experiment_id

            self._version = new_experiment_id()
        return self._version

    @property
    def save_dir(self) -> str | None:
        return self._save_dir

    @property
    def repo(self) -> Repository:
        return self.tracker.repo

    @property
    def tracker(self) -> ExperimentTracker:
        if self._tracker is None:
            from ..experiments import ExperimentTracker

            self._tracker = ExperimentTracker(open_repository(self._repo_arg))
        return self._tracker

    @property
    def experiment(self) -> ExperimentTracker:
        """The tracker recording the run, for what a logger does not cover
        (``logger.experiment.log_text("samples", text, step=...)``). Lightning reads it when
        the fit is set up, before the model is known: it starts nothing."""
        return self.tracker

    @property
    def run(self) -> Experiment:
        """The coralx run: the active one (started now if need be) or, after the fit, the
        ended one as stored.

        >>> logger.run.commit_hash
        """
        if self._ended is not None and self.tracker.current is None:
            return self.tracker.get_or_raise(self._ended.experiment_id)
        return self._run()

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kw: Any) -> None:
        flat = json_params(_flatten_dict(_convert_params(params)))
        if self.tracker.current is None and self._ended is None:
            self._params.update(flat)  # the run starts in log_graph, when the model is known
        else:
            self._run()
            self.tracker.log_params(flat)

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        self._module = model
        self._run()

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        tracker = self._tracker
        if tracker is None or tracker.current is None:
            self._run()
            tracker = self.tracker
        tracker.log_metrics(metrics, step=step)

    def save(self) -> None:
        """Nothing to do: Lightning calls this after every logging step, and the tracker's
        background thread writes buffered values within half a second anyway (``finalize``
        writes the rest)."""

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """End the run: ``"success"`` COMPLETED, ``"failed"`` FAILED with the exception being
        handled (CANCELLED for Ctrl-C), ``"finished"`` (a SLURM requeue signal stopped the
        fit) CANCELLED; commit the checkpoints ``log_model=True`` held."""
        exc = sys.exc_info()[1] if status == "failed" else None
        self._run()
        if exc is None or not isinstance(exc, KeyboardInterrupt | SystemExit):
            self._commit_held()
        best = self._best_commit()
        if status == "failed":
            if isinstance(exc, KeyboardInterrupt):
                self._ended = self.tracker.cancel()
            else:
                message = f"{type(exc).__name__}: {exc}" if exc is not None else "the fit failed"
                detail = "".join(traceback.format_exception(exc)) if exc is not None else None
                self._ended = self.tracker.fail(message, error_detail=detail)
        elif status == "finished":
            self._ended = self.tracker.end(commit_hash=best, status="cancelled")
        else:
            self._ended = self.tracker.end(commit_hash=best)

    # -- checkpoints ------------------------------------------------------------------------

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: ModelCheckpoint) -> None:
        """Record the checkpoint just saved; commit (or hold) its weights per ``log_model``."""
        self._run()
        self._callbacks[id(checkpoint_callback)] = checkpoint_callback  # as WandbLogger keeps them
        path = os.path.abspath(checkpoint_callback._last_checkpoint_saved)
        entry = self._entry(checkpoint_callback, path)
        now = self._log_model == "all" or (
            self._log_model is True and checkpoint_callback.save_top_k == -1
        )
        if now:
            entry["commit"] = self._commit(entry)
        elif self._log_model is True:
            self._hold(entry)
        self._checkpoints = [c for c in self._checkpoints if c["path"] != path] + [entry]
        self.tracker.set_data("lightning/checkpoints", self._checkpoints)

    def _entry(self, callback: Any, path: str) -> dict[str, Any]:
        trainer = self._module.trainer if self._module is not None else None
        score = callback.current_score
        return {
            "path": path,
            "step": int(trainer.global_step) if trainer is not None else None,
            "epoch": int(trainer.current_epoch) if trainer is not None else None,
            "monitor": callback.monitor,
            "score": None if score is None else float(score),
            "commit": None,
        }

    def _commit(self, entry: dict[str, Any], held: Any = None) -> str:
        """Commit the module's weights (or a held copy) for one checkpoint; a checkpoint of
        the same step as the last commit (``last.ckpt`` beside a top-k one) shares it."""
        for other in self._checkpoints:
            if other.get("commit") and other["step"] == entry["step"] and held is None:
                return str(other["commit"])
        if held is None:
            if self._module is None:
                raise InvalidValue(
                    "CoralxLogger has not seen the LightningModule; keep the Trainer's "
                    "enable_autolog_hparams=True, or call logger.log_graph(model) first"
                )
            held = self._module
        self.repo.stage_weights(held)
        score = "" if entry["score"] is None else f": {entry['monitor']}={entry['score']:.6g}"
        message = f"{self._name} epoch {entry['epoch']} step {entry['step']}{score}"
        return self.repo.commit(message).commit_hash

    def _hold(self, entry: dict[str, Any]) -> None:
        from ..store.torch_compat import cpu_copy

        same = [e for e, _ in self._held.values() if e["step"] == entry["step"]]
        copy = self._held[same[0]["path"]][1] if same else cpu_copy(self._module)
        self._held[entry["path"]] = (entry, copy)
        for path in [p for p in self._held if not Path(p).exists()]:
            del self._held[path]  # ModelCheckpoint removed it: it is no longer kept

    def _commit_held(self) -> None:
        kept = [p for p in self._held if Path(p).exists()]
        by_copy: dict[int, str] = {}
        for path in kept:
            entry, copy = self._held[path]
            if id(copy) not in by_copy:  # last.ckpt and a top-k one of the same step: one commit
                by_copy[id(copy)] = self._commit(entry, copy)
            entry["commit"] = by_copy[id(copy)]
        self._held.clear()
        if kept:
            self.tracker.set_data("lightning/checkpoints", self._checkpoints)

    def _best_commit(self) -> str | None:
        by_path = {c["path"]: c.get("commit") for c in self._checkpoints}
        callbacks = sorted(self._callbacks.values(), key=lambda c: c.monitor is None)
        for callback in callbacks:
            best = by_path.get(os.path.abspath(callback.best_model_path or ""))
            if best:
                return str(best)
        commits = [c["commit"] for c in self._checkpoints if c.get("commit")]
        return str(commits[-1]) if commits else None

    # -- the run ----------------------------------------------------------------------------

    def _run(self) -> Experiment:
        """The active run, started now if need be (a new child run after the fit ended)."""
        current = self.tracker.current
        if current is not None:
            return current
        parent = self._ended.experiment_id if self._ended is not None else self._find_parent()
        eid = None if self._ended is not None else self.version
        exp = self.tracker.start(
            self._name,
            description=self._description,
            params=self._params,
            tags=self._tags,
            parent_experiment=parent,
            experiment_id=eid,
        )
        if self._ended is not None:
            self._version = exp.experiment_id
            self._checkpoints = []
        return exp

    def _find_parent(self) -> str | None:
        """The run that saved the checkpoint this fit resumes from, if a coralx run did."""
        if self._parent is not None:
            return self._parent
        trainer = getattr(self._module, "_trainer", None)
        ckpt = getattr(trainer, "ckpt_path", None) if trainer is not None else None
        if not ckpt:
            return None
        path = os.path.abspath(ckpt)
        for exp in self.tracker.list(tags=[_TAG]):
            saved = ((exp.data or {}).get("lightning") or {}).get("checkpoints") or []
            if any(c.get("path") == path for c in saved):
                return exp.experiment_id
        return None
