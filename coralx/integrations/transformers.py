"""Hugging Face: :class:`CoralxCallback`, a ``transformers.TrainerCallback``.

>>> from coralx.integrations.transformers import CoralxCallback
>>> trainer = Trainer(model, args, train_dataset=data, callbacks=[CoralxCallback()])
>>> trainer.train()                          # doctest: +SKIP

* ``on_train_begin`` starts a coralx run whose params are the ``TrainingArguments`` and the
  model's config, flattened (``args/learning_rate``, ``config/hidden_size``);
* ``on_log`` and ``on_evaluate`` log the numbers at ``state.global_step`` (a value both hooks
  see is logged once);
* ``on_save`` commits the model's weights (tied ones once; tensors only, never a pickle),
  linked to the run, beside the checkpoint folder the Trainer wrote;
* ``on_train_end`` ends the run, its ``commit_hash`` the best checkpoint's commit (with
  ``metric_for_best_model``) or the last one.

The callback writes its run id into ``trainer_state.json`` (an ``ExportableState``), so
``trainer.train(resume_from_checkpoint=...)`` records a child of the run that saved that
checkpoint.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from ._common import flatten_params, json_params, open_repository

if TYPE_CHECKING:
    from ..experiments import Experiment, ExperimentTracker
    from ..repository import Repository

__all__ = ["CoralxCallback"]

_TAG = "transformers"
_CHECKPOINT_PREFIX = "checkpoint"  # the Trainer's folder name: checkpoint-<step>


class CoralxCallback(TrainerCallback, ExportableState):
    """Record a ``Trainer`` run in coralx, each checkpoint as a weight commit.

    ``repo`` is a :class:`~coralx.Repository` or the path of one (created if missing); by
    default the store at or above the current folder. ``name`` defaults to the
    ``TrainingArguments.run_name`` (or the model's class). ``log_model=False`` stores no
    weights.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        repo: Repository | str | os.PathLike[str] | None = None,
        tags: list[str] | None = None,
        log_model: bool = True,
        experiment_id: str | None = None,
    ) -> None:
        self.name = name
        self.repo_arg = repo
        self.tags = [_TAG, *(tags or [])]
        self.log_model = log_model
        # The run id, in trainer_state.json with each checkpoint (see `state`).
        self.experiment_id = experiment_id
        self._tracker: ExperimentTracker | None = None
        self._checkpoints: list[dict[str, Any]] = []
        self._logged: tuple[int, set[str]] = (-1, set())

    # -- ExportableState: what trainer_state.json keeps of this callback --------------------

    def state(self) -> dict[str, Any]:
        from ..repository import Repository

        repo = self.repo_arg
        path = str(repo.root) if isinstance(repo, Repository) else repo and os.fspath(repo)
        return {
            "args": {"name": self.name, "repo": path, "tags": self.tags[1:]},
            "attributes": {"experiment_id": self.experiment_id},
        }

    @property
    def tracker(self) -> ExperimentTracker:
        if self._tracker is None:
            from ..experiments import ExperimentTracker

            self._tracker = ExperimentTracker(open_repository(self.repo_arg))
        return self._tracker

    @property
    def run(self) -> Experiment:
        """The run being recorded, or the last one recorded, as stored."""
        current = self.tracker.current
        if current is not None:
            return current
        if self.experiment_id is None:
            from ..errors import NoActiveExperiment

            raise NoActiveExperiment("show: the Trainer has not started")
        return self.tracker.get_or_raise(self.experiment_id)

    # -- the Trainer's hooks ----------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        model = kwargs.get("model")
        parent = self._resumed_from(state)
        params: dict[str, Any] = {"args": args.to_dict()}
        config = getattr(model, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            params["config"] = config.to_dict()
        name = self.name or _run_name(args, model)
        exp = self.tracker.start(
            name,
            params=json_params(flatten_params(params)),
            tags=self.tags,
            parent_experiment=parent,
        )
        self.experiment_id = exp.experiment_id
        self._checkpoints = []

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        self._log(state, logs or {})

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        self._log(state, metrics or {})

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero or self.tracker.current is None:
            return
        folder = os.path.join(args.output_dir, f"{_CHECKPOINT_PREFIX}-{state.global_step}")
        entry: dict[str, Any] = {
            "path": os.path.abspath(folder),
            "step": int(state.global_step),
            "commit": None,
        }
        model = kwargs.get("model")
        if self.log_model and model is not None:
            repo = self.tracker.repo
            repo.stage_weights(_unwrap(model))
            entry["commit"] = repo.commit(f"{self.run.name} step {state.global_step}").commit_hash
        self._checkpoints.append(entry)
        self.tracker.set_data("transformers/checkpoints", self._checkpoints)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero or self.tracker.current is None:
            return
        self.tracker.end(commit_hash=self._best_commit(state))

    # -- helpers ------------------------------------------------------------------------------

    def _log(self, state: Any, values: dict[str, Any]) -> None:
        if not state.is_world_process_zero or self.tracker.current is None:
            return
        step = int(state.global_step)
        if self._logged[0] != step:
            self._logged = (step, set())
        seen = self._logged[1]
        numbers = {
            k: float(v)
            for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k not in seen
        }
        if numbers:
            self.tracker.log_metrics(numbers, step=step)
            seen.update(numbers)

    def _best_commit(self, state: Any) -> str | None:
        best = state.best_model_checkpoint
        if best:
            for entry in self._checkpoints:
                if entry["path"] == os.path.abspath(best) and entry["commit"]:
                    return str(entry["commit"])
        commits = [e["commit"] for e in self._checkpoints if e["commit"]]
        return str(commits[-1]) if commits else None

    def _resumed_from(self, state: Any) -> str | None:
        """The run that saved the checkpoint being resumed: the id this callback wrote into
        its ``trainer_state.json`` (a fresh fit starts at step 0 and has none)."""
        if not state.global_step:
            return None
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        saved = saved[0] if isinstance(saved, list) and saved else saved
        eid = ((saved or {}).get("attributes") or {}).get("experiment_id")
        return eid if isinstance(eid, str) else None


def _run_name(args: Any, model: Any) -> str:
    name = getattr(args, "run_name", None)
    if name and name != args.output_dir:
        return str(name)
    return type(model).__name__ if model is not None else "trainer"


def _unwrap(model: Any) -> Any:
    """The model itself, not a (Distributed)DataParallel wrapper around it."""
    import torch

    wrappers = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model
