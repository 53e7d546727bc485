"""``Experiment``: the seed's experiment, run from its config folder on coralx's sweep engine.

>>> experiment = Experiment(name="my_experiment", id=1, desc="...", env=env,
...                         config_dir_path="path/to/configs")
>>> experiment.run()

Each repeat of each trial is one coralx run (with its own seed); running again skips the
completed repeats and reruns the failed ones as children of the failed run. The workspace is
laid out as the seed shows it:

```
<workspace>/<name>/configs/{experiment,base,trials}.yaml
<workspace>/<name>/logs/metrics.log
<workspace>/<name>/trials/trial_<id>/{configs/trial.yaml, logs/trial.log, artifacts/,
                                     run_<n>/{logs/run.log, artifacts/}}
```
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..sweeps.folder import BASE_FILE, EXPERIMENT_FILE, TRIALS_FILE, load_folder
from .environment import Environment
from .trial import Trial

__all__ = ["Experiment"]


class _RepeatRun:
    """The engine's function for one repeat: the pipeline's ``run`` with an OmegaConf config,
    inside the repeat's own environment."""

    def __init__(self, pipeline: Any, env: Environment) -> None:
        self.pipeline = pipeline
        self.env = env
        self.__module__ = type(pipeline).__module__
        self.__qualname__ = f"{type(pipeline).__qualname__}.run"
        self.__name__ = "run"

    def __call__(self, config: Mapping[str, Any], run: Any) -> Any:
        from omegaconf import OmegaConf

        trial = Trial.from_config(config, self.env)
        number = int(config.get("repeat", 0)) + 1
        run_env = trial.run_env(number)
        run.environment = run_env
        run.experiment_environment = self.env
        run.trial_name = trial.name
        run.repeat_number = number
        settings = dict(config)  # the trial's settings, its name, repeat, seed and trial id
        self.pipeline.run_context = run
        self.pipeline.env = run_env
        for log in (trial.env.logger, run_env.logger):
            log.info(
                "run %s of trial %s starts (seed %s, run %s)", number, trial.name, run.seed, run.id
            )
        try:
            result = self.pipeline.run(OmegaConf.create(settings))
        except BaseException:
            for log in (trial.env.logger, run_env.logger):
                log.exception("run %s of trial %s failed", number, trial.name)
            raise
        else:
            for log in (trial.env.logger, run_env.logger):
                log.info("run %s of trial %s completed", number, trial.name)
        finally:
            self.pipeline.run_context = None
            run_env.close()
            trial.env.close()
        if result is not None and OmegaConf.is_config(result):
            result = OmegaConf.to_container(result, resolve=True)
        return result


class Experiment:
    """The seed's Experiment: ``Experiment(name, id, desc, env, config_dir_path).run()``."""

    def __init__(
        self,
        name: str,
        id: Any,
        desc: str | None = None,
        env: Environment | None = None,
        config_dir_path: str | os.PathLike[str] = "configs",
    ) -> None:
        self.name = name
        self.id = id
        self.desc = desc
        self.config_dir_path = Path(config_dir_path)
        parent = env if env is not None else Environment("outputs")
        self.parent_env = parent
        self.spec = load_folder(self.config_dir_path)  # checked now: errors before anything runs
        self.spec.name, self.spec.id = name, id
        if desc is not None:
            self.spec.desc = desc
        self.env = parent.create_child(name, log_name="experiment")
        self.env.pipeline = parent.pipeline
        from ..sweeps.config import merge

        shared = merge(self.spec.base, self.spec.settings)
        self.trials = [
            Trial(t.name, t.id, t.repeat, merge(shared, t.settings).to_dict(), self.env)
            for t in self.spec.trials
        ]

    def run(
        self, pipeline: Any = None, *, workers: int = 1, rerun: bool = False, **options: Any
    ) -> Any:
        """Run every repeat of every trial not already completed; return the sweep's result."""
        from ..sweeps.folder import experiment_of_folder
        from .pipelines import Pipeline

        pipeline = pipeline or self.parent_env.pipeline or Pipeline(self.parent_env)
        self._write_layout()
        experiment = experiment_of_folder(
            self.config_dir_path,
            _RepeatRun(pipeline, self.env),
            callbacks=pipeline.callbacks,
            executor="inline",
            spec=self.spec,
        )
        options.setdefault("repo", _store(self.parent_env))
        self.env.logger.info("experiment %s (id %s) starts", self.name, self.id)
        result = experiment.run_sweep(workers=workers, rerun=rerun, **options)
        self.env.logger.info("experiment %s ends: %s", self.name, result.counts)
        self.result = result
        return result

    def _write_layout(self) -> None:
        for file in (EXPERIMENT_FILE, BASE_FILE, TRIALS_FILE):
            source = self.config_dir_path / file
            if source.is_file():
                shutil.copyfile(source, self.env.config_dir / file)
        for trial in self.trials:
            trial.write_config()


def _store(env: Environment) -> Any:
    """The coralx store at or above the workspace; made in the workspace when there is none."""
    from ..errors import RepositoryNotFound
    from ..repository import Repository

    env.workspace.mkdir(parents=True, exist_ok=True)
    try:
        return Repository.discover(env.workspace)
    except RepositoryNotFound:
        return Repository(env.workspace, init=True)
