"""The tracker: the seed's API and behaviours, and what coralx adds to it."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from coralx import Repository
from coralx.errors import (
    AmbiguousRevision,
    CoralxError,
    ExperimentAlreadyRunning,
    ExperimentNotFound,
    InvalidName,
    InvalidValue,
    NoActiveExperiment,
)
from coralx.experiments import (
    Experiment,
    ExperimentMetric,
    ExperimentStatus,
    ExperimentTracker,
)
from coralx.identity import hostname
from coralx.records.journal import read_journal

CONTRACT_KEYS = {
    "experiment_id", "name", "description", "status", "created_at", "started_at", "ended_at",
    "params", "tags", "commit_hash", "weight_commits", "code", "branch", "parent_experiment",
    "notes", "error_message", "error_detail", "host", "pid", "lease_until", "metrics_summary",
    "data", "artifacts", "sweep", "result", "schema_version",
}  # fmt: skip


@pytest.fixture(autouse=True)
def _outside_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs start in the current folder's git work tree: keep tests out of this checkout's."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def tracker(repo: Repository) -> ExperimentTracker:
    return ExperimentTracker(repo)


def record_file(repo: Repository, eid: str) -> dict:
    return json.loads((repo.path / "experiments" / f"{eid}.json").read_text())


# -- the seed's data classes --------------------------------------------------------------------


def test_status_values_are_lowercase_strings() -> None:
    assert [s.value for s in ExperimentStatus] == [
        "pending", "running", "completed", "failed", "cancelled",
    ]  # fmt: skip
    assert ExperimentStatus.RUNNING == "running"


def test_metric_round_trip() -> None:
    metric = ExperimentMetric(name="accuracy", value=0.95, step=500, metadata={"phase": "val"})
    restored = ExperimentMetric.from_dict(metric.to_dict())
    assert restored == metric
    assert ExperimentMetric("loss", 0.5).timestamp.tzinfo is not None


def test_experiment_methods_on_a_plain_experiment() -> None:
    exp = Experiment(experiment_id="test", name="test-exp", params={"lr": 0.1})
    assert exp.status == ExperimentStatus.PENDING
    for value, step in ((1.0, 0), (0.5, 100), (0.3, 200)):
        exp.metrics.append(ExperimentMetric(name="loss", value=value, step=step))
    exp.metrics.append(ExperimentMetric(name="accuracy", value=0.8, step=100))
    exp.metrics.append(ExperimentMetric(name="accuracy", value=0.9, step=200))
    assert len(exp.get_metric_history("loss")) == 3
    assert exp.get_latest_metric("loss").value == 0.3
    assert exp.get_best_metric("loss", mode="min").value == 0.3
    assert exp.get_best_metric("accuracy", mode="max").step == 200
    assert exp.get_latest_metric("nothing") is None
    assert exp.metric_names == ["accuracy", "loss"]
    assert exp.duration is None
    restored = Experiment.from_dict(exp.to_dict())
    assert restored.params == {"lr": 0.1}
    assert len(restored.metrics) == 5
    with pytest.raises(InvalidValue):
        exp.get_best_metric("loss", mode="lowest")
    given = Experiment(
        experiment_id="x",
        name="all-fields",
        description="d",
        status=ExperimentStatus.RUNNING,
        metrics=[ExperimentMetric("acc", 0.5, step=1)],
        params={"a": 1},
        tags=["t"],
        commit_hash="c" * 40,
        branch="main",
        parent_experiment="p",
        notes="n",
    )
    assert given.get_latest_metric("acc").step == 1
    assert given.duration is None and given.metric_names == ["acc"]


# -- the seed's workflow ------------------------------------------------------------------------


def test_start_log_end_persists(repo: Repository, tracker: ExperimentTracker) -> None:
    exp = tracker.start(
        name="bert-finetuning",
        description="Fine-tuning BERT on custom dataset",
        params={"lr": 0.001, "batch_size": 32, "epochs": 10},
        tags=["bert", "classification"],
    )
    assert exp.status == ExperimentStatus.RUNNING
    assert tracker.current_experiment is exp
    assert tracker.current is exp
    for step in range(5):
        tracker.log("loss", 1.0 / (step + 1), step=step)
        tracker.log("accuracy", step / 10, step=step)
    tracker.log_metrics({"val_loss": 0.4, "val_acc": 0.7})
    tracker.log("loss", 0.5, step=100)
    tracker.log_metrics({"loss": 0.45, "accuracy": 0.85}, step=101)
    tracker.log_params({"epochs": 20, "scheduler": "cosine"})
    tracker.add_tags(["production", "v2", "bert"])
    tracker.set_notes("Trying new learning rate schedule")
    assert len(exp.metrics) == 15
    assert exp.get_latest_metric("loss").value == 0.45

    ended = tracker.end(commit_hash="ab" * 20)
    assert ended is exp
    assert exp.status == ExperimentStatus.COMPLETED
    assert exp.ended_at is not None and exp.duration is not None and exp.duration >= 0
    assert tracker.current_experiment is None

    again = ExperimentTracker(Repository(repo.root)).get(exp.experiment_id)
    assert again.params == {
        "lr": 0.001, "batch_size": 32, "epochs": 20, "scheduler": "cosine",
    }  # fmt: skip
    assert again.tags == ["bert", "classification", "production", "v2"]
    assert again.notes == "Trying new learning rate schedule"
    assert again.commit_hash == "ab" * 20
    assert len(again.metrics) == 15
    assert [m.value for m in again.get_metric_history("loss")][-2:] == [0.5, 0.45]
    assert again.get_best_metric("loss", mode="min").value == 0.2
    assert again.metric_names == ["accuracy", "loss", "val_acc", "val_loss"]
    assert again.metrics_summary["loss"]["count"] == 7
    assert again.metrics_summary["loss"]["best_step_min"] == 4

    on_disk = record_file(repo, exp.experiment_id)
    assert set(on_disk) >= CONTRACT_KEYS
    assert on_disk["status"] == "completed"
    assert on_disk["schema_version"] == 1
    assert set(on_disk["metrics_summary"]["loss"]) >= {
        "last", "min", "max", "count", "best_step_min", "best_step_max", "last_step",
    }  # fmt: skip


def test_fail_keeps_the_message(tracker: ExperimentTracker) -> None:
    exp = tracker.start("oom")
    try:
        raise MemoryError("Out of memory")
    except MemoryError as e:
        tracker.fail(error_message=str(e))
    assert exp.status == ExperimentStatus.FAILED
    assert exp.error_message == "Out of memory"
    assert "MemoryError" in (exp.error_detail or "")
    assert tracker.get(exp.experiment_id).status == "failed"
    tracker.start("plain")
    assert tracker.fail().error_message == "failed"


def test_end_with_a_status(tracker: ExperimentTracker) -> None:
    tracker.start("a")
    assert tracker.end(status=ExperimentStatus.FAILED).status == "failed"
    tracker.start("b")
    assert tracker.cancel().status == ExperimentStatus.CANCELLED
    tracker.start("c")
    with pytest.raises(InvalidValue):
        tracker.end(status="running")
    assert tracker.current is not None


def test_list_filters(tracker: ExperimentTracker) -> None:
    tracker.start("exp1", tags=["bert"])
    tracker.end()
    tracker.start("exp2", tags=["bert", "large"])
    tracker.end(status=ExperimentStatus.FAILED)
    tracker.start("exp3", tags=["gpt"])
    tracker.end()
    assert len(tracker.list()) == 3
    assert [e.name for e in tracker.list()] == ["exp3", "exp2", "exp1"]  # newest first
    assert len(tracker.list(status=ExperimentStatus.COMPLETED)) == 2
    assert len(tracker.list(status="failed")) == 1
    assert {e.name for e in tracker.list(tags=["bert"])} == {"exp1", "exp2"}
    assert {e.name for e in tracker.list(tags=["bert", "large"])} == {"exp2"}
    assert {e.name for e in tracker.list(tags=["large", "gpt"], tags_match="any")} == {
        "exp2", "exp3",
    }  # fmt: skip
    assert len(tracker.list(limit=2)) == 2
    assert tracker.list(branch="main") == []
    assert [e.name for e in tracker.get_by_name("exp2")] == ["exp2"]
    assert {e.name for e in tracker.list(name="exp[12]")} == {"exp1", "exp2"}
    with pytest.raises(InvalidValue):
        tracker.list(status="done")


def test_list_params_since_and_sort(tracker: ExperimentTracker) -> None:
    for i, lr in enumerate([0.1, 0.01, 0.001]):
        tracker.start(f"r{i}", params={"lr": lr, "opt": {"name": "adam"}})
        tracker.log("val_loss", [0.5, 0.2, 0.3][i])
        tracker.end()
    assert [e.name for e in tracker.list(params={"lr": 0.01})] == ["r1"]
    assert len(tracker.list(params={"opt": {"name": "adam"}})) == 3
    assert tracker.list(params={"lr": 0.5}) == []
    assert [e.name for e in tracker.list(sort_by="val_loss")] == ["r1", "r2", "r0"]
    assert [e.name for e in tracker.list(sort_by="val_loss", mode="max")] == ["r0", "r2", "r1"]
    assert len(tracker.list(since=time.time() + 60)) == 0
    assert len(tracker.list(since=time.time() - 60)) == 3


def test_find_best(tracker: ExperimentTracker) -> None:
    for name, values in (("exp1", [0.9, 0.5]), ("exp2", [0.3, 0.8]), ("exp3", [0.6, 0.4])):
        tracker.start(name, params={"n": name}, tags=["production-ready"])
        for step, v in enumerate(values):
            tracker.log("loss", v, step=step)
        tracker.end(commit_hash=name[-1] * 40)
    best = tracker.find_best("loss", mode="min", limit=3)
    assert [r["name"] for r in best] == ["exp2", "exp3", "exp1"]
    assert best[0]["best_value"] == 0.3
    assert best[0]["step"] == 0
    assert best[0]["commit_hash"] == "2" * 40
    assert best[0]["params"] == {"n": "exp2"}
    last = tracker.find_best("loss", mode="min", by="last")
    assert [r["name"] for r in last] == ["exp3", "exp1", "exp2"]
    assert [r["name"] for r in tracker.find_best("loss", mode="max", limit=1)] == ["exp1"]
    assert tracker.find_best("loss", tags=["nope"]) == []
    tagged = tracker.find_best("loss", mode="max", tags=["production-ready"], limit=3)
    assert len(tagged) == 3
    done = tracker.find_best("loss", status=ExperimentStatus.COMPLETED, limit=5)
    assert len(done) == 3


def test_nan_and_inf_are_kept_but_never_win(tracker: ExperimentTracker) -> None:
    nan_run = tracker.start("nan")
    tracker.log("loss", float("nan"), step=0)
    tracker.log("loss", float("-inf"), step=1)
    tracker.log("loss", 2.0, step=2)
    tracker.end()
    inf_run = tracker.start("inf")
    tracker.log("loss", float("inf"), step=0)
    tracker.end()
    ok = tracker.start("ok")
    tracker.log("loss", 5.0, step=0)
    tracker.end()
    low = tracker.find_best("loss", mode="min")
    assert [r["name"] for r in low] == ["nan", "ok"]
    high = tracker.find_best("loss", mode="max")
    assert [r["name"] for r in high] == ["ok", "nan"]
    got = tracker.get(nan_run.experiment_id)
    values = [m.value for m in got.get_metric_history("loss")]
    assert math.isnan(values[0]) and values[1] == float("-inf") and values[2] == 2.0
    assert got.get_best_metric("loss", "min").value == 2.0
    assert tracker.get(inf_run.experiment_id).get_best_metric("loss", "max") is None
    assert math.isinf(tracker.get(inf_run.experiment_id).metrics_summary["loss"]["last"])
    assert tracker.get(ok.experiment_id).metrics_summary["loss"]["min"] == 5.0


def test_numpy_and_torch_values(tracker: ExperimentTracker) -> None:
    exp = tracker.start("values")
    tracker.log("a", np.float32(0.25), step=np.int64(3))
    tracker.log("b", np.array(1.5))
    tracker.log("c", 7)
    tracker.log("d", True)
    with pytest.raises(InvalidValue):
        tracker.log("e", "0.5")
    with pytest.raises(InvalidValue):
        tracker.log("e", np.zeros(3))
    with pytest.raises(InvalidValue):
        tracker.log("e", 1.0, step="3")
    tracker.end()
    values = {m.name: (m.value, m.step) for m in tracker.get(exp.experiment_id).metrics}
    assert values == {"a": (0.25, 3), "b": (1.5, None), "c": (7.0, None), "d": (1.0, None)}


def test_torch_scalar(tracker: ExperimentTracker) -> None:
    torch = pytest.importorskip("torch")
    exp = tracker.start("torch")
    tracker.log("loss", torch.tensor(0.5), step=1)
    tracker.end()
    assert tracker.get(exp.experiment_id).get_latest_metric("loss").value == 0.5


def test_compare(tracker: ExperimentTracker) -> None:
    exp1 = tracker.start("exp1", params={"lr": 0.001, "bs": 32})
    tracker.log("loss", 0.5)
    tracker.log("accuracy", 0.85)
    tracker.end()
    exp2 = tracker.start("exp2", params={"lr": 0.01, "bs": 32})
    tracker.log("loss", 0.4)
    tracker.log("accuracy", 0.90)
    tracker.end()
    comparison = tracker.compare(
        experiment_ids=[exp1.experiment_id, exp2.experiment_id[:17]], metrics=None
    )
    assert len(comparison["experiments"]) == 2
    assert set(comparison["metrics"]) == {"loss", "accuracy"}
    assert comparison["metrics"]["loss"][exp2.experiment_id]["last"] == 0.4
    assert comparison["best"]["loss"]["min"] == exp2.experiment_id
    assert comparison["best"]["accuracy"]["max"] == exp2.experiment_id
    assert set(comparison["params"]) == {"lr"}
    assert comparison["all_params"]["bs"] == {exp1.experiment_id: 32, exp2.experiment_id: 32}
    only = tracker.compare([exp1.experiment_id, exp2.experiment_id], metrics=["loss"])
    assert set(only["metrics"]) == {"loss"}


def test_resume_and_lineage_never_edit_the_old_run(
    repo: Repository, tracker: ExperimentTracker
) -> None:
    original = tracker.start("original", params={"lr": 0.001}, tags=["t"])
    tracker.log("loss", 0.5)
    tracker.fail("diverged")
    before = (repo.path / "experiments" / f"{original.experiment_id}.json").read_bytes()
    resumed = tracker.resume(original.experiment_id)
    assert resumed.status == "running"
    assert resumed.name == "original-resumed"
    assert resumed.params == {"lr": 0.001}
    assert resumed.tags == ["t"]
    assert resumed.parent_experiment == original.experiment_id
    tracker.end()
    again = tracker.resume(resumed.experiment_id[:17])
    tracker.end()
    after = (repo.path / "experiments" / f"{original.experiment_id}.json").read_bytes()
    assert after == before
    chain = tracker.lineage(again.experiment_id)
    assert [e.experiment_id for e in chain] == [
        original.experiment_id, resumed.experiment_id, again.experiment_id,
    ]  # fmt: skip
    assert [e.experiment_id for e in tracker.children(original.experiment_id)] == [
        resumed.experiment_id
    ]


def test_resume_pending_then_start_by_id(tracker: ExperimentTracker) -> None:
    old = tracker.start("base", params={"lr": 1})
    tracker.end()
    pending = tracker.resume(old.experiment_id, start=False)
    assert pending.status == "pending"
    assert tracker.current is None
    run = tracker.start("base-resumed", experiment_id=pending.experiment_id)
    assert run.experiment_id == pending.experiment_id
    assert run.params == {"lr": 1}
    assert run.parent_experiment == old.experiment_id
    tracker.end()
    with pytest.raises(InvalidValue, match="completed"):
        tracker.start("again", experiment_id=pending.experiment_id)


def test_delete(repo: Repository, tracker: ExperimentTracker) -> None:
    exp = tracker.start("to-delete")
    tracker.log("loss", 1.0)
    with pytest.raises(InvalidValue):
        tracker.delete(exp.experiment_id)
    tracker.end()
    assert tracker.delete(exp.experiment_id) is True
    assert tracker.get(exp.experiment_id) is None
    with pytest.raises(ExperimentNotFound):
        tracker.get_or_raise(exp.experiment_id)
    assert not list((repo.path / "experiments").glob(f"{exp.experiment_id}*"))
    # The seed's semantics: deleting what is not there says so with False.
    assert tracker.delete(exp.experiment_id) is False
    assert tracker.delete("ffffffffffff") is False


def test_fail_keeps_the_message_in_notes_and_error(tracker: ExperimentTracker) -> None:
    plain = tracker.start("plain")
    failed = tracker.fail("CUDA out of memory")
    assert failed.notes == "CUDA out of memory" and failed.error_message == "CUDA out of memory"
    stored = tracker.get_or_raise(plain.experiment_id)
    assert stored.notes == "CUDA out of memory" and stored.status == "failed"
    noted = tracker.start("noted")
    tracker.set_notes("lr warmup off")
    tracker.fail("diverged at step 40")
    stored = tracker.get_or_raise(noted.experiment_id)
    assert stored.notes == "lr warmup off\ndiverged at step 40"
    assert stored.error_message == "diverged at step 40"


def test_get_summary(tracker: ExperimentTracker) -> None:
    tracker.start("exp1")
    tracker.log("loss", 0.5)
    tracker.end()
    tracker.start("exp2")
    tracker.fail()
    summary = tracker.get_summary()
    assert summary["total_experiments"] == 2
    assert summary["by_status"] == {"completed": 1, "failed": 1}
    assert summary["unique_names"] == 2
    assert summary["branches"] == []
    assert summary["total_metrics_logged"] == 1


def test_context_manager(tracker: ExperimentTracker) -> None:
    with tracker.start("ok") as exp:
        tracker.log("loss", 1.0)
    assert exp.status == "completed"
    with pytest.raises(RuntimeError), tracker.start("boom") as bad:
        raise RuntimeError("exploded at step 3")
    assert bad.status == "failed"
    assert bad.error_message == "exploded at step 3"
    assert "RuntimeError" in (bad.error_detail or "")
    with pytest.raises(KeyboardInterrupt), tracker.start("ctrl-c") as stopped:
        raise KeyboardInterrupt
    assert stopped.status == "cancelled"
    with tracker.start("ended-inside") as inside:
        tracker.end(commit_hash="c" * 40)
    assert inside.status == "completed" and inside.commit_hash == "c" * 40


# -- bad input ----------------------------------------------------------------------------------


def test_bad_input_is_refused_and_changes_nothing(
    repo: Repository, tracker: ExperimentTracker
) -> None:
    with pytest.raises(InvalidValue, match="JSON"):
        tracker.start("x", params={"s": {1, 2}})
    with pytest.raises(InvalidValue):
        tracker.start("x", params={"nan": float("nan")})
    with pytest.raises(InvalidName):
        tracker.start("")
    assert not list((repo.path / "experiments").glob("*.json"))
    with pytest.raises(NoActiveExperiment, match="No active experiment"):
        tracker.log("loss", 0.5)

    exp = tracker.start("ok", params={"lr": 1})
    with pytest.raises(ExperimentAlreadyRunning, match="already running"):
        tracker.start("second")
    tracker.log("loss", 0.5)
    before = record_file(repo, exp.experiment_id)
    with pytest.raises(InvalidName):
        tracker.log("", 1.0)
    with pytest.raises(InvalidName):
        tracker.log(["loss"], 1.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        tracker.log_params({"obj": object()})
    with pytest.raises(InvalidValue):
        tracker.log_metrics({"a": 1.0, "b": "x"})
    assert record_file(repo, exp.experiment_id)["params"] == before["params"]
    tracker.end()
    assert [m.name for m in tracker.get(exp.experiment_id).metrics] == ["loss"]
    with pytest.raises(NoActiveExperiment):
        tracker.log("loss", 0.1)
    with pytest.raises(NoActiveExperiment):
        tracker.end()
    assert len(tracker.get(exp.experiment_id).metrics) == 1


def test_ids_and_prefixes(tracker: ExperimentTracker) -> None:
    a = tracker.start("a", experiment_id="0123456789abcdef0001")
    tracker.end()
    b = tracker.start("b", experiment_id="0123456789abcdef0002")
    tracker.end()
    assert tracker.get("0123456789abcdef0001").name == "a"
    assert tracker.get("0123456789ABCDEF0002").name == "b"
    with pytest.raises(AmbiguousRevision) as info:
        tracker.get("0123456789abcdef")
    assert a.experiment_id in str(info.value) and b.experiment_id in str(info.value)
    for bad in ("nonexistent", "ffff", "../../etc/passwd", ""):
        assert tracker.get(bad) is None
        with pytest.raises(ExperimentNotFound):
            tracker.get_or_raise(bad)
    with pytest.raises(AmbiguousRevision):
        tracker.get_or_raise("0123456789abcdef")
    with pytest.raises(InvalidName):
        tracker.start("c", experiment_id="../x")


def test_time_sortable_ids(tracker: ExperimentTracker) -> None:
    ids = []
    for i in range(5):
        ids.append(tracker.start(f"r{i}").experiment_id)
        tracker.end()
    assert ids == sorted(ids)
    assert [e.experiment_id for e in tracker.list()] == ids[::-1]


def test_set_data_and_artifacts(repo: Repository, tracker: ExperimentTracker) -> None:
    from coralx.records.blobs import BlobStore

    exp = tracker.start("data")
    tracker.set_data("eval/squad/f1", 88.1)
    tracker.set_data("eval/squad/em", 80)
    ref = tracker.log_artifact("report.txt", "hello", step=3)
    tracker.end()
    got = tracker.get(exp.experiment_id)
    assert got.data == {"eval": {"squad": {"f1": 88.1, "em": 80}}}
    assert got.artifacts[0]["name"] == "report.txt"
    assert BlobStore(repo).get(ref["blob"]) == b"hello"
    assert record_file(repo, exp.experiment_id)["artifacts"][0]["media_type"] == "text/plain"


# -- crashes, leases, supervisors ---------------------------------------------------------------


def test_stale_lease_from_another_host_is_marked_failed(
    repo: Repository, tracker: ExperimentTracker
) -> None:
    exp = tracker.start("elsewhere")
    tracker.log("loss", 0.7, step=1)
    tracker.flush()
    run = tracker._run
    assert run is not None
    # Make the record look like it belongs to a machine that stopped renewing its lease.
    from coralx.records.live import flusher

    flusher.discard(run)
    run.record.host = "another-host"
    run.record.lease_until = time.time() - 1
    tracker._store.write(run.record)
    tracker._store.drain()
    tracker._run = None
    other = ExperimentTracker(Repository(repo.root))
    got = other.get(exp.experiment_id)
    assert got.status == "failed"
    assert "lease" in (got.error_message or "")
    assert got.metrics_summary["loss"]["last"] == 0.7


def test_dead_pid_on_this_host_is_marked_failed(
    repo: Repository, tracker: ExperimentTracker
) -> None:
    exp = tracker.start("dead")
    run = tracker._run
    assert run is not None
    from coralx.records.live import flusher

    flusher.discard(run)
    run.record.pid = 2**22 + 12345  # above pid_max: no such process
    tracker._store.write(run.record)
    tracker._store.drain()  # as if written long ago: its index row is in place
    tracker._run = None
    listed = ExperimentTracker(Repository(repo.root)).list(status="failed")
    assert [e.experiment_id for e in listed] == [exp.experiment_id]
    assert "gone" in (listed[0].error_message or "")
    assert record_file(repo, exp.experiment_id)["host"] == hostname()


def test_mark_failed_for_a_supervisor(tracker: ExperimentTracker) -> None:
    pending = tracker.resume(tracker.start("a").experiment_id, start=False)
    tracker.end()
    assert tracker.mark_failed(pending.experiment_id, "worker died", "segfault")
    got = tracker.get(pending.experiment_id)
    assert (got.status, got.error_message, got.error_detail) == (
        "failed", "worker died", "segfault",
    )  # fmt: skip
    assert not tracker.mark_failed(pending.experiment_id, "again")


def test_torn_journal_tail_is_ignored(repo: Repository, tracker: ExperimentTracker) -> None:
    exp = tracker.start("torn")
    for i in range(10):
        tracker.log("loss", float(i), step=i)
    tracker.flush()
    tracker.log("loss", 99.0, step=10)
    tracker.end()
    path = repo.path / "experiments" / f"{exp.experiment_id}.metrics"
    data = path.read_bytes()
    first_frame_end = data.rfind(b"CXJ")
    path.write_bytes(data[:-5])  # a write torn five bytes short
    cols = read_journal(path)
    assert cols.torn
    assert cols.values.tolist() == [float(i) for i in range(10)]
    path.write_bytes(data[:first_frame_end] + b"CXJ1" + b"\xff" * 40)
    assert read_journal(path).values.tolist() == [float(i) for i in range(10)]


def test_reindex_rebuilds_the_same_answers(repo: Repository, tracker: ExperimentTracker) -> None:
    for i in range(4):
        tracker.start(f"r{i}", tags=["a"] if i % 2 else ["b"], params={"i": i})
        tracker.log("loss", 1.0 / (i + 1))
        tracker.end()
    before = tracker.find_best("loss", limit=None)
    (repo.path / "index.sqlite").unlink()
    for suffix in ("-wal", "-shm"):
        (repo.path / f"index.sqlite{suffix}").unlink(missing_ok=True)
    fresh = ExperimentTracker(Repository(repo.root))
    assert fresh.find_best("loss", limit=None) == before
    assert fresh.reindex()["records"] == 4
    assert len(fresh.list(tags=["a"])) == 2


def test_index_catches_up_with_records_written_elsewhere(
    repo: Repository, tracker: ExperimentTracker
) -> None:
    exp = tracker.start("r")
    tracker.end()
    other = ExperimentTracker(Repository(repo.root))
    assert len(other.list()) == 1
    # A record changed behind the index's back (a crash between the two writes) is re-read.
    path = repo.path / "experiments" / f"{exp.experiment_id}.json"
    data = json.loads(path.read_text())
    data["tags"] = ["late"]
    data["revision"] += 1
    path.write_text(json.dumps(data))
    third = ExperimentTracker(Repository(repo.root))
    assert [e.experiment_id for e in third.list(tags=["late"])] == [exp.experiment_id]


def test_weight_commits_are_linked_through_the_repository(
    repo: Repository, tracker: ExperimentTracker
) -> None:
    if not hasattr(repo, "commit_listeners"):
        pytest.skip("the weight store (commit_listeners) is not in this build")
    exp = tracker.start("linked")
    assert repo.commit_context["experiment_id"] == exp.experiment_id
    tracker.end()
    assert repo.commit_context == {}


def test_flush_makes_values_durable_without_ending(
    repo: Repository, tracker: ExperimentTracker
) -> None:
    exp = tracker.start("durable")
    for i in range(1000):
        tracker.log("loss", float(i), step=i)
    tracker.flush()
    cols = read_journal(repo.path / "experiments" / f"{exp.experiment_id}.metrics")
    assert len(cols) == 1000
    assert record_file(repo, exp.experiment_id)["metrics_summary"]["loss"]["count"] == 1000
    tracker.end()


def test_background_flush_within_a_second(repo: Repository, tracker: ExperimentTracker) -> None:
    exp = tracker.start("background")
    tracker.log("loss", 1.0, step=0)
    path = repo.path / "experiments" / f"{exp.experiment_id}.metrics"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(read_journal(path)) == 0:
        time.sleep(0.05)
    assert len(read_journal(path)) == 1
    tracker.end()


def test_errors_are_coralx_errors() -> None:
    assert issubclass(NoActiveExperiment, CoralxError)
    assert issubclass(NoActiveExperiment, ValueError)
    assert issubclass(ExperimentAlreadyRunning, ValueError)


def test_lazy_public_names() -> None:
    import coralx

    assert coralx.ExperimentTracker is ExperimentTracker
    assert coralx.ExperimentStatus is ExperimentStatus


def test_record_model_round_trip(tmp_path: Path) -> None:
    from coralx.ids import new_experiment_id
    from coralx.records.models import ExperimentRecord, MetricSummary

    rec = ExperimentRecord(
        experiment_id=new_experiment_id(),
        name="x",
        metrics_summary={"loss": MetricSummary(last=float("nan"), min=1.0, count=2)},
    )
    back = ExperimentRecord.from_json(rec.to_json())
    assert math.isnan(back.metrics_summary["loss"].last or 0.0)
    assert back.metrics_summary["loss"].min == 1.0
    newer = json.loads(rec.to_json())
    newer["schema_version"] = 99
    from coralx.errors import UnsupportedFormat

    with pytest.raises(UnsupportedFormat):
        ExperimentRecord.from_dict(newer)


def test_python_and_numpy_summaries_agree() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from coralx.records.journal import NO_STEP, merge_summary, summarize, summarize_list

    values = st.lists(
        st.one_of(
            st.sampled_from([float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1.0]),
            st.floats(-5, 5, allow_nan=False),
        ),
        min_size=1,
        max_size=30,
    )

    @settings(max_examples=100, deadline=None)
    @given(values, st.integers(0, 30))
    def check(vals: list[float], cut: int) -> None:
        steps = [NO_STEP if i % 7 == 3 else i for i in range(len(vals))]
        whole = summarize(np.array(vals), np.array(steps, dtype=np.int64))
        assert _same(summarize_list(vals, steps), whole)
        if 0 < cut < len(vals):  # merging two halves gives the summary of the whole
            merged = merge_summary(
                summarize_list(vals[:cut], steps[:cut]), summarize_list(vals[cut:], steps[cut:])
            )
            assert _same(merged, whole)

    check()


def _same(a: dict, b: dict) -> bool:
    def norm(v: object) -> object:
        return "nan" if isinstance(v, float) and math.isnan(v) else v

    return {k: norm(v) for k, v in a.items()} == {k: norm(v) for k, v in b.items()}


def test_a_failed_journal_write_loses_nothing(repo: Repository, tracker: ExperimentTracker) -> None:
    exp = tracker.start("disk-full")
    run = tracker._run
    assert run is not None
    tracker.log("a", 1.0, step=0)
    real_append = run.journal.append
    calls = {"n": 0}

    def failing_append(frame: bytes) -> None:
        calls["n"] += 1
        raise OSError(28, "No space left on device")

    run.journal.append = failing_append  # type: ignore[method-assign]
    with pytest.raises(OSError):
        run.flush()
    run.journal.append = real_append  # type: ignore[method-assign]
    tracker.log("a", 2.0, step=1)
    # A name declared while the buffer held only a time marker is declared with a later frame.
    run.add_name("b")
    tracker.flush()
    run.buffer.append((None, time.time(), -(2**63)))
    run.flush()
    tracker.log("b", 3.0, step=2)
    tracker.end()
    got = tracker.get(exp.experiment_id)
    assert calls["n"] == 1
    assert [(m.name, m.value, m.step) for m in got.metrics] == [
        ("a", 1.0, 0), ("a", 2.0, 1), ("b", 3.0, 2),
    ]  # fmt: skip
