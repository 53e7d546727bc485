"""The seed's complete training example, run as written, against the real weight store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coralx import Repository
from coralx.experiments import ExperimentStatus, ExperimentTracker


class Model:
    """A stand-in for a network: a few arrays that training nudges."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.params = {
            "conv.weight": self.rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
            "fc.weight": self.rng.standard_normal((10, 32)).astype(np.float32),
            "fc.bias": np.zeros(10, dtype=np.float32),
        }
        self.epoch = 0


def train_epoch(model: Model, loader: object) -> float:
    model.epoch += 1
    for name in model.params:
        model.params[name] += 0.01 * model.rng.standard_normal(model.params[name].shape).astype(
            np.float32
        )
    return 1.0 / model.epoch


def validate(model: Model, loader: object) -> tuple[float, float]:
    noise = float(model.rng.uniform(0, 0.3))
    val_loss = 1.0 / model.epoch + noise
    return val_loss, 1.0 - val_loss / 2


def model_to_weights(model: Model) -> dict[str, np.ndarray]:
    return {name: value.copy() for name, value in model.params.items()}


def run_seed_example(repo_path: str, seed: int, tags: list[str] | None = None):
    """The seed's "Complete Training Example", with `coral` spelled `coralx` (and a tag
    argument so the "Finding Best Model" snippet has runs to find)."""
    model, train_loader, val_loader = Model(seed), None, None
    saved: dict[str, dict[str, np.ndarray]] = {}

    repo = Repository(repo_path, init=True)
    tracker = ExperimentTracker(repo)

    # Start experiment
    exp = tracker.start(name="resnet-training", params={"lr": 0.01, "momentum": 0.9}, tags=tags)

    try:
        best_val_loss = float("inf")

        for epoch in range(100):
            train_loss = train_epoch(model, train_loader)
            val_loss, val_acc = validate(model, val_loader)

            # Log metrics
            tracker.log_metrics(
                {"train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_acc},
                step=epoch,
            )

            # Save checkpoint on improvement
            if val_loss < best_val_loss:
                best_val_loss = val_loss
                weights = model_to_weights(model)
                repo.stage_weights(weights)
                commit = repo.commit(f"Epoch {epoch}: val_loss={val_loss:.4f}")
                saved[commit.commit_hash] = weights

        # End successfully
        tracker.end(commit_hash=commit.commit_hash)

    except Exception as e:
        tracker.fail(str(e))
        raise
    return repo, tracker, exp, commit, saved


def test_seed_training_example_runs_as_written(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    repo, tracker, exp, last, saved = run_seed_example("./checkpoints", seed=1)
    assert exp.status == ExperimentStatus.COMPLETED
    assert exp.commit_hash == last.commit_hash
    # Every checkpoint commit made during the run is linked to it, in order.
    assert exp.weight_commits == list(saved)
    assert last.experiment_id == exp.experiment_id
    assert repo.commit_context == {}
    on_disk = tracker.get(exp.experiment_id)
    assert on_disk.weight_commits == list(saved)
    assert repo.resolve(exp.experiment_id) == last.commit_hash
    assert repo.resolve(exp.experiment_id[:16]) == last.commit_hash
    history = on_disk.get_metric_history("val_loss")
    assert len(history) == 100
    assert on_disk.get_best_metric("val_loss", "min").value == min(m.value for m in history)


def test_seed_find_best_then_load_the_weights(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    saved: dict[str, dict[str, np.ndarray]] = {}
    for seed in (1, 2, 3):
        *_, weights = run_seed_example("./checkpoints", seed=seed, tags=["production-ready"])
        saved.update(weights)
    run_seed_example("./checkpoints", seed=4)  # untagged: not a candidate
    repo = Repository("./checkpoints")
    tracker = ExperimentTracker(repo)

    # Find top 3 experiments by validation accuracy
    results = tracker.find_best(
        metric="val_accuracy",
        mode="max",
        tags=["production-ready"],
        limit=3,
    )

    # Load best model
    best = results[0]
    weights = repo.get_all_weights(best["commit_hash"])

    assert len(results) == 3
    assert [r["best_value"] for r in results] == sorted(
        (r["best_value"] for r in results), reverse=True
    )
    expected = saved[best["commit_hash"]]
    assert set(weights) == set(expected)
    for name, array in expected.items():
        assert weights[name].dtype == array.dtype
        assert weights[name].tobytes() == array.tobytes()

    loss_best = tracker.find_best("loss", mode="min")
    assert loss_best == []
    with pytest.raises(KeyError):
        repo.get_all_weights("0" * 40)
