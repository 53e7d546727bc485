"""CoralxLogger on real Lightning fits: metrics, params, checkpoints as commits, failure,
resume."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning.pytorch")

from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

from coralx import Repository  # noqa: E402
from coralx.experiments import ExperimentStatus, ExperimentTracker  # noqa: E402
from coralx.integrations.lightning import CoralxLogger  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*log_every_n_steps.*:UserWarning"),
    # lightning 2.6 on torch 2.13 uses a pytree class torch deprecates
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),
]


class Regressor(L.LightningModule):
    """y = 3x - 1 with a tied pair of parameters, so the tie goes through the store."""

    def __init__(self, lr: float = 0.05, fail_at: int | None = None, nested: dict | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.body = torch.nn.Linear(4, 4)
        self.head = torch.nn.Linear(4, 4)
        self.head.weight = self.body.weight  # tied
        self.out = torch.nn.Linear(4, 1)

    def forward(self, x):
        return self.out(torch.relu(self.head(torch.relu(self.body(x)))))

    def training_step(self, batch, _idx):
        if self.hparams.fail_at is not None and self.global_step >= self.hparams.fail_at:
            raise RuntimeError("loss went to the moon")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, _idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def _loader(seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 4, generator=g)
    y = 3 * x[:, :1] - 1
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


def _trainer(tmp_path: Path, logger: CoralxLogger, epochs: int = 3, **ckpt) -> L.Trainer:
    callback = ModelCheckpoint(monitor="val_loss", mode="min", **ckpt)
    return L.Trainer(
        max_epochs=epochs,
        logger=logger,
        callbacks=[callback],
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        log_every_n_steps=1,
    )


def test_fit_logs_metrics_params_and_commits_every_checkpoint(tmp_path, repo):
    torch.manual_seed(0)
    logger = CoralxLogger("regress", repo=repo, log_model="all", tags=["demo"])
    model = Regressor(nested={"opt": {"momentum": 0.9}, "layers": [4, 4]})
    trainer = _trainer(tmp_path, logger, save_top_k=2, save_last=True)
    trainer.fit(model, _loader(0), _loader(1))

    exp = ExperimentTracker(repo).get(logger.version)
    assert exp.status == ExperimentStatus.COMPLETED
    assert {"lightning", "demo"} <= set(exp.tags)
    # hyperparameters flattened as Lightning's loggers flatten them
    assert exp.params["lr"] == 0.05
    assert exp.params["nested/opt/momentum"] == 0.9
    assert exp.params["nested/layers"] == [4, 4]
    assert exp.params["fail_at"] is None
    # every step's train_loss and every epoch's val_loss, at the trainer's steps
    steps = [m.step for m in exp.get_metric_history("train_loss")]
    assert steps == list(range(12))
    assert len(exp.get_metric_history("val_loss")) == 3
    # every checkpoint saved is a commit linked to the run; the run's commit is the best's
    saved = exp.data["lightning"]["checkpoints"]
    assert all(c["commit"] for c in saved)
    callback = trainer.checkpoint_callback
    best = next(c for c in saved if c["path"] == str(Path(callback.best_model_path).resolve()))
    assert exp.commit_hash == best["commit"]
    assert best["score"] == pytest.approx(float(callback.best_model_score))
    assert set(exp.weight_commits) == {c["commit"] for c in saved}
    info = repo.log(best["commit"], limit=1)[0]
    assert info.experiment_id == exp.experiment_id
    assert f"step {best['step']}" in info.message and "val_loss=" in info.message
    # the last commit is the module as it ended, tie included
    fresh = Regressor()
    assert repo.load_into(fresh, exp.weight_commits[-1]) is not None
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    state, _ = repo.state_dict(exp.weight_commits[-1])
    assert state["head.weight"] is state["body.weight"]


def test_log_model_true_commits_the_kept_checkpoints_at_the_end(tmp_path, repo):
    torch.manual_seed(1)
    logger = CoralxLogger("kept", repo=repo, log_model=True)
    trainer = _trainer(tmp_path, logger, epochs=4, save_top_k=1)
    model = Regressor(lr=0.01)
    trainer.fit(model, _loader(0), _loader(1))
    exp = ExperimentTracker(repo).get(logger.version)
    saved = exp.data["lightning"]["checkpoints"]
    committed = [c for c in saved if c["commit"]]
    # only the best checkpoint survives save_top_k=1, and only it was committed
    assert len(saved) >= 2 and len(committed) == 1
    assert committed[0]["path"] == str(Path(trainer.checkpoint_callback.best_model_path).resolve())
    assert exp.commit_hash == committed[0]["commit"] == exp.weight_commits[-1]
    # its weights are the ones Lightning saved then (read with weights_only: no code runs)
    ckpt = torch.load(committed[0]["path"], weights_only=True, map_location="cpu")
    stored = repo.get_all_weights(exp.commit_hash, framework="torch")
    for key, value in ckpt["state_dict"].items():
        assert torch.equal(stored[key], value), key


def test_log_model_false_stores_no_weights(tmp_path, repo):
    logger = CoralxLogger("plain", repo=repo)
    _trainer(tmp_path, logger, epochs=1).fit(Regressor(), _loader(0), _loader(1))
    exp = ExperimentTracker(repo).get(logger.version)
    assert exp.status == ExperimentStatus.COMPLETED
    assert exp.commit_hash is None and exp.weight_commits == []
    assert exp.data["lightning"]["checkpoints"][0]["commit"] is None


def test_a_fit_that_raises_ends_failed_with_the_error(tmp_path, repo):
    logger = CoralxLogger("boom", repo=repo, log_model="all")
    with pytest.raises(RuntimeError, match="moon"):
        _trainer(tmp_path, logger).fit(Regressor(fail_at=6), _loader(0), _loader(1))
    exp = ExperimentTracker(repo).get(logger.version)
    assert exp.status == ExperimentStatus.FAILED
    assert "RuntimeError: loss went to the moon" in exp.error_message
    assert "training_step" in exp.error_detail
    assert len(exp.get_metric_history("train_loss")) == 6  # what was logged is kept


@pytest.mark.filterwarnings("ignore:The dirpath has changed:UserWarning")  # a new run, a new folder
def test_resuming_from_a_checkpoint_makes_a_child_run(tmp_path, repo):
    first = CoralxLogger("resume", repo=repo, log_model="all")
    trainer = _trainer(tmp_path, first, epochs=2)
    trainer.fit(Regressor(), _loader(0), _loader(1))
    ckpt = trainer.checkpoint_callback.best_model_path

    second = CoralxLogger("resume", repo=repo, log_model="all")
    _trainer(tmp_path, second, epochs=4).fit(Regressor(), _loader(0), _loader(1), ckpt_path=ckpt)
    tracker = ExperimentTracker(repo)
    child = tracker.get(second.version)
    assert child.parent_experiment == first.version
    assert [e.experiment_id for e in tracker.lineage(child.experiment_id)] == [
        first.version,
        second.version,
    ]
    # the resumed fit continues the step count
    assert child.get_metric_history("train_loss")[0].step == 8


def test_hyperparams_from_a_namespace_and_bad_log_model(repo):
    logger = CoralxLogger("ns", repo=repo)
    logger.log_hyperparams(argparse.Namespace(lr=0.1, act=torch.nn.ReLU, name="x"))
    logger.log_metrics({"loss": torch.tensor(0.5)}, step=3)
    logger.finalize("success")
    exp = ExperimentTracker(repo).get(logger.version)
    assert exp.params == {"lr": 0.1, "act": "ReLU", "name": "x"}
    assert exp.get_latest_metric("loss").value == 0.5
    with pytest.raises(ValueError, match="log_model"):
        CoralxLogger(log_model="best")


def test_a_requeue_signal_and_ctrl_c_end_the_run_cancelled(repo):
    logger = CoralxLogger("requeued", repo=repo)
    logger.log_metrics({"a": 1.0}, step=0)
    logger.finalize("finished")
    assert logger.run.status == ExperimentStatus.CANCELLED
    other = CoralxLogger("interrupted", repo=repo)
    other.log_metrics({"a": 1.0}, step=0)
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        other.finalize("failed")
    assert other.run.status == ExperimentStatus.CANCELLED


def test_logger_finds_the_store_by_path(tmp_path):
    logger = CoralxLogger("by-path", repo=tmp_path / "store")
    logger.log_metrics({"a": 1.0}, step=0)
    logger.finalize("success")
    assert ExperimentTracker(Repository(tmp_path / "store")).get(logger.version).name == "by-path"
