"""``coralx import mlflow``: real MLflow writes runs to a FileStore folder and to a SQLite
database; coralx reads them without mlflow and every value is compared with what MLflow's own
client returns."""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import sqlite3
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")
np = pytest.importorskip("numpy")

from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

from coralx import Repository  # noqa: E402
from coralx.cli.main import cli  # noqa: E402
from coralx.errors import ImportSourceError  # noqa: E402
from coralx.experiments import ExperimentTracker  # noqa: E402
from coralx.importers.mlflow import import_mlflow  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

T0 = 1_733_000_000_000  # ms
STATUS = {"FINISHED": "completed", "FAILED": "failed", "KILLED": "cancelled"}


class Trap:
    """Unpickling this writes a file: if the importer ever loaded a pickle, the test sees it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).write_text, ("unpickled!",))


def _write_runs(client: MlflowClient, artifact_root: Path, files: Path) -> None:
    """Four runs with everything the importer maps, plus a deleted one."""
    exp = client.create_experiment("vision", artifact_location=artifact_root.as_uri())
    parent = client.create_run(exp, run_name="sweep", start_time=T0,
                               tags={"team": "cv", "mlflow.source.git.commit": "a" * 40,
                                     "mlflow.source.git.branch": "main",
                                     "mlflow.note.content": "the lr sweep"})  # fmt: skip
    pid = parent.info.run_id
    metrics = [Metric("loss", 1.0 / (s + 1), T0 + 10 * s, s) for s in range(50)]
    metrics += [Metric("acc", v, T0 + 5 + 10 * s, s) for s, v in
                enumerate([0.1, math.nan, 0.5, math.inf, -math.inf, 0.9])]  # fmt: skip
    metrics += [Metric("train/lr", 0.1, T0 + 7, 0), Metric("loss", 0.25, T0 + 999, 3)]
    client.log_batch(pid, metrics=metrics, params=[Param("lr", "0.1"), Param("model", "resnet")])
    (files / "notes.txt").write_text("hello")
    save_file({"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(4, np.float16)},
              files / "model.safetensors")  # fmt: skip
    with open(files / "model.pt", "wb") as f:
        pickle.dump(Trap(str(files / "UNPICKLED")), f)
    client.log_artifact(pid, str(files / "notes.txt"))
    client.log_artifact(pid, str(files / "model.safetensors"), "model")
    client.log_artifact(pid, str(files / "model.pt"), "model")
    client.set_terminated(pid, "FINISHED", end_time=T0 + 60_000)
    for i, status in enumerate(["FAILED", "KILLED"]):
        child = client.create_run(exp, run_name=f"trial-{i}", start_time=T0 + 1000 + i,
                                  tags={"mlflow.parentRunId": pid})  # fmt: skip
        client.log_batch(child.info.run_id, params=[Param("lr", str(10.0**-i))],
                         tags=[RunTag("trial", str(i))],
                         metrics=[Metric("loss", 0.5 - i, T0 + 2000, 7)])  # fmt: skip
        client.set_terminated(child.info.run_id, status, end_time=T0 + 3000 + i)
    running = client.create_run(exp, run_name="still-going", start_time=T0 + 5000)
    client.log_metric(running.info.run_id, "loss", 2.0, timestamp=T0 + 5001, step=0)
    gone = client.create_run(exp, run_name="deleted", start_time=T0 + 6000)
    client.delete_run(gone.info.run_id)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("mlflow")
    old = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        out = {}
        for kind, uri in [
            ("filestore", (root / "mlruns").as_uri()),
            ("sqlite", f"sqlite:///{root / 'mlflow.db'}"),
        ]:
            files = root / f"files-{kind}"
            files.mkdir()
            _write_runs(MlflowClient(tracking_uri=uri), root / f"artifacts-{kind}", files)
            out[kind] = uri
        out["filestore_path"] = str(root / "mlruns")
        return out
    finally:
        if old is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = old


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize("kind", ["filestore", "sqlite"])
def test_every_value_comes_across(sources, kind, repo):
    uri = sources[kind]
    source = sources["filestore_path"] if kind == "filestore" else uri
    summary = import_mlflow(repo, source)
    assert (summary.runs, summary.imported, summary.deleted) == (5, 4, 1)
    assert summary.weight_commits == 1 and summary.pickles == 1

    client = MlflowClient(tracking_uri=uri)
    tracker = ExperimentTracker(repo)
    by_mlflow = {e.data["mlflow"]["run_id"]: e for e in tracker.list()}
    runs = client.search_runs([client.get_experiment_by_name("vision").experiment_id])
    assert set(by_mlflow) == {r.info.run_id for r in runs}
    for run in runs:
        exp = by_mlflow[run.info.run_id]
        assert exp.name == run.info.run_name
        assert exp.params == run.data.params
        assert exp.data["mlflow"]["tags"] == run.data.tags
        assert exp.status.value == STATUS.get(run.info.status, "failed")
        assert exp.started_at.timestamp() * 1000 == pytest.approx(run.info.start_time, abs=0.5)
        if run.info.end_time:
            assert exp.ended_at.timestamp() * 1000 == pytest.approx(run.info.end_time, abs=0.5)
        for key in run.data.metrics:
            history = client.get_metric_history(run.info.run_id, key)
            theirs = sorted(((m.step, m.timestamp, m.value) for m in history), key=lambda r: r[:2])
            ours = sorted(
                ((m.step, round(m.timestamp.timestamp() * 1000), m.value)
                 for m in exp.get_metric_history(key)),
                key=lambda r: (r[0], r[1]),
            )  # fmt: skip
            assert len(ours) == len(theirs), key
            for (s1, t1, v1), (s2, t2, v2) in zip(ours, theirs):
                assert (s1, t1) == (s2, t2) and _same(v1, v2), (key, s1)
        assert set(exp.metric_names) == set(run.data.metrics)
        parent = run.data.tags.get("mlflow.parentRunId")
        if parent:
            assert exp.parent_experiment == by_mlflow[parent].experiment_id
        else:
            assert exp.parent_experiment is None

    sweep = next(e for e in by_mlflow.values() if e.name == "sweep")
    assert sweep.code["commit"] == "a" * 40 and sweep.branch == "main"
    assert sweep.description == "the lr sweep"
    assert {"mlflow", "mlflow:vision", "team=cv"} <= set(sweep.tags)
    assert sweep.get_metric_history("loss")[3].value == 0.25  # a value logged twice at step 3
    still = next(e for e in by_mlflow.values() if e.name == "still-going")
    assert still.status.value == "failed" and "RUNNING" in still.error_message
    # artifacts: blobs with the same bytes; the pickle kept unread; the safetensors a commit
    arts = {a["name"]: a for a in sweep.artifacts}
    from coralx.records.blobs import BlobStore

    assert BlobStore(repo).get(arts["notes.txt"]["blob"]) == b"hello"
    assert arts["model/model.pt"]["kind"] == "pickle"
    raw = BlobStore(repo).get(arts["model/model.pt"]["blob"])
    assert b"write_text" in raw
    marker = Path(sources["filestore_path"]).parent / f"files-{kind}" / "UNPICKLED"
    assert not marker.exists()
    weights = repo.get_all_weights(sweep.commit_hash)
    assert np.array_equal(weights["w"], np.arange(12, dtype=np.float32).reshape(3, 4))
    assert weights["b"].dtype == np.float16
    assert sweep.weight_commits == [sweep.commit_hash]
    assert repo.log(sweep.commit_hash, limit=1)[0].experiment_id == sweep.experiment_id


def test_importing_twice_adds_nothing(sources, repo):
    first = import_mlflow(repo, sources["sqlite"])
    records = sorted(p.name for p in (repo.path / "experiments").iterdir())
    heads = {b.name: b.commit for b in repo.branches()}
    again = import_mlflow(repo, sources["sqlite"])
    assert first.imported == 4 and again.imported == 0 and again.skipped == 4
    assert sorted(p.name for p in (repo.path / "experiments").iterdir()) == records
    assert {b.name: b.commit for b in repo.branches()} == heads
    # deleted runs on request, once
    assert import_mlflow(repo, sources["sqlite"], include_deleted=True).imported == 1


def test_cli_shows_progress_and_a_summary(sources, repo, runner, monkeypatch):
    monkeypatch.chdir(repo.root)
    result = runner.invoke(cli, ["import", "mlflow", sources["filestore_path"]])
    assert result.exit_code == 0, result.output
    assert "imported 4 of 5 runs" in result.output and "1 weight commits" in result.output
    assert "1 deleted in MLflow" in result.output
    result = runner.invoke(cli, ["import", "mlflow", sources["filestore_path"], "--json"])
    assert json.loads(result.output)["skipped"] == 4
    assert len(ExperimentTracker(repo).list()) == 4


def _nothing_imported(repo: Repository) -> bool:
    return ExperimentTracker(repo).list() == []


def test_bad_sources_are_refused_before_anything_is_written(sources, repo, tmp_path):
    with pytest.raises(ImportSourceError, match="no such file"):
        import_mlflow(repo, tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("not a database")
    with pytest.raises(ImportSourceError, match="neither a SQLite database"):
        import_mlflow(repo, tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImportSourceError, match="not an MLflow FileStore"):
        import_mlflow(repo, tmp_path / "empty")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(ImportSourceError, match="not MLflow's"):
        import_mlflow(repo, f"sqlite:///{other}")
    with pytest.raises(ImportSourceError, match="local FileStore"):
        import_mlflow(repo, "http://127.0.0.1:5000")
    future = tmp_path / "future.db"
    shutil.copy(sources["sqlite"].removeprefix("sqlite:///"), future)
    with sqlite3.connect(future) as db:
        db.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    with pytest.raises(ImportSourceError, match="revision ffffffffffff is not one coralx knows"):
        import_mlflow(repo, f"sqlite:///{future}")
    assert _nothing_imported(repo)


def test_cli_maps_a_bad_source_to_exit_code_2(repo, runner, monkeypatch, tmp_path):
    monkeypatch.chdir(repo.root)
    result = runner.invoke(cli, ["import", "mlflow", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "no such file or folder" in result.output


def test_a_damaged_run_stops_the_import_naming_its_file_and_leaves_no_half_run(
    sources, repo, tmp_path
):
    copy = tmp_path / "mlruns"
    shutil.copytree(sources["filestore_path"], copy)
    bad = next(p for p in copy.glob("*/*/metrics/loss") if "trial-1" in p.parents[1].joinpath(
        "meta.yaml").read_text())  # fmt: skip
    bad.write_text("1733000002000 not-a-number 7\n")
    with pytest.raises(ImportSourceError, match="unreadable") as info:
        import_mlflow(repo, copy)
    assert str(bad.parents[1] / "meta.yaml") in str(info.value)
    tracker = ExperimentTracker(repo)
    names = {e.name for e in tracker.list()}
    assert "trial-1" not in names  # the runs read before it (in listing order) are whole
    for exp in tracker.list():  # each run there is whole: its record and all its values
        assert exp.metrics_summary and all(s["count"] for s in exp.metrics_summary.values())
    bad.write_text("1733000002000 0.5 7\n")
    assert import_mlflow(repo, copy).imported == 5 - 1 - len(names)
