"""The Experiment Manager's API (seed 002) on coralx's engine: change ``experiment_manager.``
to ``coralx.experiment_manager.`` in the imports and a project runs as before.

>>> from coralx.experiment_manager.environment import Environment
>>> from coralx.experiment_manager.experiment import Experiment
>>> from coralx.experiment_manager.pipelines import Pipeline
>>> env = Environment(workspace="outputs"); env.setup_environment()
>>> Experiment(name="my_experiment", id=1, desc="...", env=env, config_dir_path="configs").run()

A config folder (``experiment.yaml``, ``base.yaml``, ``trials.yaml``) is read by the engine's
:mod:`coralx.sweeps.folder`; every repeat of every trial is a coralx run (record, seed,
metrics, checkpoints as weight commits), and the seed's workspace layout is written beside.
Configs reach your code as OmegaConf objects, as in the seed.
"""

from __future__ import annotations

from .environment import Environment
from .experiment import Experiment
from .pipelines import Pipeline

__all__ = ["Environment", "Experiment", "Pipeline"]
