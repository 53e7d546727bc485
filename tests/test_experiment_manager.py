"""coralx.experiment_manager: the seed's quick start and config folders, on coralx's engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("omegaconf")

from omegaconf import OmegaConf

from coralx import Repository
from coralx.errors import InvalidConfig
from coralx.experiments import ExperimentTracker

EXPERIMENT_YAML = """\
name: my_experiment
id: 1
desc: Training a model with different hyperparameters
settings:
  model_type: mlp
  batch_size: 32
  epochs: 10
"""
BASE_YAML = """\
settings:
  model_type: mlp
  batch_size: 32
  log_level: INFO
"""
TRIALS_YAML = """\
- name: small_network
  id: 1
  repeat: 3
  settings:
    hidden_layers: [64, 32]
    learning_rate: 0.001

- name: large_network
  id: 2
  repeat: 3
  settings:
    hidden_layers: [256, 128, 64]
    learning_rate: 0.0001
"""


def _configs(folder: Path, trials: str = TRIALS_YAML) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "experiment.yaml").write_text(EXPERIMENT_YAML)
    (folder / "base.yaml").write_text(BASE_YAML)
    (folder / "trials.yaml").write_text(trials)
    return folder


QUICK_START = """
import sys
from coralx.experiment_manager.environment import Environment
from coralx.experiment_manager.experiment import Experiment
from coralx.experiment_manager.pipelines import Pipeline
from coralx.experiment_manager.pipelines.callbacks import EarlyStopping, CheckpointCallback, MetricsTracker
from omegaconf import OmegaConf

# Create environment
env_config = OmegaConf.create({
    "workspace": "outputs",
    "settings": {"debug": True}
})
env = Environment(workspace="outputs", config=env_config)
env.setup_environment()

# Create experiment
experiment = Experiment(
    name="my_experiment",
    id=1,
    desc="Training with different hyperparameters",
    env=env,
    config_dir_path="configs"
)

# Set up pipeline with callbacks
pipeline = Pipeline(env)
pipeline.register_callback(EarlyStopping(env, patience=5, min_delta_percent=0.1))
pipeline.register_callback(CheckpointCallback(interval=10, env=env))
pipeline.register_callback(MetricsTracker(env))

# Run experiment
experiment.run()
"""


def _python(cwd: Path, code: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_the_quick_start_runs_with_its_imports_changed(tmp_path: Path) -> None:
    _configs(tmp_path / "configs")
    _python(tmp_path, QUICK_START)
    root = tmp_path / "outputs" / "my_experiment"
    for path in (
        "configs/experiment.yaml",
        "configs/base.yaml",
        "configs/trials.yaml",
        "trials/trial_1/configs/trial.yaml",
        "trials/trial_1/logs/trial.log",
        "trials/trial_1/artifacts",
        "trials/trial_1/run_1/logs/run.log",
        "trials/trial_1/run_3/artifacts",
        "trials/trial_2/run_3/logs/run.log",
    ):
        assert (root / path).exists(), path
    trial = OmegaConf.load(root / "trials/trial_2/configs/trial.yaml")
    # base, then experiment, then trial settings
    assert trial.settings.epochs == 10 and trial.settings.log_level == "INFO"
    assert list(trial.settings.hidden_layers) == [256, 128, 64]
    # two trials x three repeats: six coralx runs, each with its own seed
    runs = ExperimentTracker(Repository(tmp_path / "outputs")).list()
    assert len(runs) == 6
    assert all(r.status.value == "completed" for r in runs)
    assert len({r.params["seed"] for r in runs if r.params["trial_name"] == "small_network"}) == 3
    assert {r.params["learning_rate"] for r in runs} == {0.001, 0.0001}


TRAIN_MODULE = """
import os
import numpy as np
from coralx.experiment_manager.pipelines import Pipeline


class Train(Pipeline):
    def run(self, config):
        rng = np.random.default_rng(config.seed)
        w = rng.normal(size=(4, 4)).astype("float32")
        for epoch in range(config.epochs):
            # a loss that improves fast, then by less than 0.1 % an epoch
            loss = 1.0 / (epoch + 1) if epoch < 3 else 0.25 * (1 - 0.0001 * epoch)
            self.log_metrics({"val_loss": loss}, step=epoch)
            w = w * 0.9
            self.checkpoint({"w": w}, step=epoch)
            if os.environ.get("KILL_AT") == f"{config.trial_name}:{config.repeat}":
                os.kill(os.getpid(), 9)
            if self.should_stop:
                break
        return {"epochs_run": epoch + 1}
"""

RUN_SCRIPT = """
from coralx.experiment_manager import Environment, Experiment
from coralx.experiment_manager.pipelines.callbacks import EarlyStopping, CheckpointCallback, MetricsTracker
from train import Train

env = Environment(workspace="outputs")
env.setup_environment()
pipeline = Train(env)
pipeline.register_callback(EarlyStopping(env, patience=2, min_delta_percent=0.1))
pipeline.register_callback(CheckpointCallback(interval=2, env=env))
pipeline.register_callback(MetricsTracker(env))
Experiment(name="my_experiment", id=1, env=env, config_dir_path="configs").run()
"""


def test_a_pipeline_trains_stops_early_checkpoints_and_resumes_after_a_kill(
    tmp_path: Path,
) -> None:
    _configs(tmp_path / "configs")
    (tmp_path / "train.py").write_text(TRAIN_MODULE)
    env = {**os.environ, "KILL_AT": "large_network:1"}
    killed = subprocess.run(
        [sys.executable, "-c", RUN_SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert killed.returncode == -9
    tracker = ExperimentTracker(Repository(tmp_path / "outputs"))
    done = [r for r in tracker.list() if r.status.value == "completed"]
    assert len(done) == 4  # three of small_network, the first of large_network

    _python(tmp_path, RUN_SCRIPT)
    runs = tracker.list()
    assert len(runs) == 7  # only the missing two ran, and the killed one again
    completed = [r for r in runs if r.status.value == "completed"]
    assert len(completed) == 6
    failed = [r for r in runs if r.status.value == "failed"]
    assert len(failed) == 1
    redo = next(r for r in completed if r.parent_experiment == failed[0].experiment_id)
    assert redo.params["repeat"] == 1 and redo.params["trial_name"] == "large_network"

    # EarlyStopping by min_delta_percent: improvements under 0.1 % of the best do not count
    for run in completed:
        assert run.result["epochs_run"] == 6  # epochs 4 and 5 improved by under 0.1 %
        assert run.data["early_stopping"]["stopped_step"] == 5
    # CheckpointCallback every 2 epochs: weight commits linked to the run, and their notes
    run = completed[0]
    steps = [c["step"] for c in run.data["checkpoints"]]
    assert steps == [0, 2, 4]
    repo = Repository(tmp_path / "outputs")
    weights = repo.get_all_weights(run.data["checkpoints"][-1]["commit"])
    assert weights["w"].shape == (4, 4)
    trial_dir = tmp_path / "outputs/my_experiment/trials"
    notes = sorted(p.name for p in trial_dir.glob("trial_*/run_*/artifacts/checkpoint-*"))
    assert len(notes) == 6 * 3
    lines = (tmp_path / "outputs/my_experiment/logs/metrics.log").read_text().splitlines()
    assert {json.loads(line)["metric"] for line in lines} == {"val_loss"}


def test_the_folder_runs_from_the_sweep_cli(tmp_path: Path) -> None:
    _configs(tmp_path / "configs")
    (tmp_path / "mymodule.py").write_text(
        "def train(config, run):\n"
        "    run.log('loss', config.learning_rate * 10, step=0)\n"
        "    return {'lr': config.learning_rate, 'seed': run.seed}\n"
    )
    Repository(tmp_path, init=True)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "coralx",
            "sweep",
            "run",
            "configs",
            "--entry",
            "mymodule:train",
            "--workers",
            "2",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = ExperimentTracker(Repository(tmp_path)).list()
    assert len(runs) == 6
    assert sorted({r.result["lr"] for r in runs}) == [0.0001, 0.001]
    again = subprocess.run(
        [sys.executable, "-m", "coralx", "sweep", "run", "configs", "--entry", "mymodule:train"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0
    assert len(ExperimentTracker(Repository(tmp_path)).list()) == 6  # all cached


def test_a_trial_without_a_name_is_a_clear_error(tmp_path: Path) -> None:
    from coralx.sweeps.folder import load_folder

    folder = _configs(tmp_path / "configs", trials="- id: 1\n  repeat: 2\n  settings: {}\n")
    with pytest.raises(InvalidConfig, match=r"trials.yaml: trial 1 has no 'name'"):
        load_folder(folder)
    (folder / "experiment.yaml").write_text("id: 1\n")
    with pytest.raises(InvalidConfig, match=r"experiment.yaml: the experiment has no 'name'"):
        load_folder(folder)


def test_insert_value_multiply_and_yaml_serializable(tmp_path: Path) -> None:
    from coralx.experiment_manager.common.serializable import YAMLSerializable
    from coralx.experiment_manager.common.yaml_utils import insert_value, multiply

    base_config = OmegaConf.create({"learning_rate": "?", "batch_size": 32})
    config = insert_value(base_config, 0.001)
    assert config.learning_rate == 0.001 and config.batch_size == 32
    model_configs = [{"model": "mlp", "layers": [64, 32]}, {"model": "cnn", "filters": [32, 64]}]
    lr_configs = [{"learning_rate": 0.1}, {"learning_rate": 0.01}]
    configs = multiply(model_configs, lr_configs)
    assert len(configs) == 4
    assert [(c.model, c.learning_rate) for c in configs] == [
        ("mlp", 0.1),
        ("mlp", 0.01),
        ("cnn", 0.1),
        ("cnn", 0.01),
    ]

    @YAMLSerializable.register("MyCallback")
    class MyCallback(YAMLSerializable):
        def __init__(self, config=None):
            super().__init__(config)
            self.patience = (config or {}).get("patience", 1)

        @classmethod
        def from_config(cls, config):
            return cls(config)

    made = YAMLSerializable.create(OmegaConf.create({"type": "MyCallback", "patience": 4}))
    assert isinstance(made, MyCallback) and made.patience == 4
    made.save(tmp_path / "cb.yaml")
    assert MyCallback.load(tmp_path / "cb.yaml").patience == 4
    with pytest.raises(InvalidConfig, match="registered"):
        YAMLSerializable.get_by_name("Missing")
