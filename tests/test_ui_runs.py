"""The viewer over runs recorded by the real tracker: metrics, text, figures, Logger/LogReader."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("coralx.experiments", reason="the tracker (coralx.experiments) is not here")

from starlette.testclient import TestClient

from coralx import Logger, LogReader, Repository
from coralx.errors import ArtifactNotFound, InvalidValue
from coralx.records import media
from coralx.web.app import create_app

from .ui_helpers import tree_digest


def _tracker(repo: Repository) -> Any:
    from coralx.experiments import ExperimentTracker

    return ExperimentTracker(repo, capture_code=False)


def _figure(y: float) -> Any:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, y])
    return fig


@pytest.fixture
def logged(repo: Repository) -> dict[str, Any]:
    """One run with two metrics (one with a NaN), text at three steps, figures."""
    tracker = _tracker(repo)
    exp = tracker.start("logged", params={"lr": 0.1}, tags=["t"])
    for step in range(10_000):
        tracker.log("loss", 1.0 / (step + 1), step=step)
    tracker.log("acc", 0.5, step=0)
    tracker.log("acc", float("nan"), step=1)
    log = Logger(tracker)
    for it in range(3):
        log.set_global_it(it)
        log.add_text("sample", f"<b>step {it}</b>")
    fig = _figure(1.0)
    log.add_figure("curve", fig)
    log.set_global_it(5)
    log.add_figure("curve", fig)  # the same image again: the same blobs
    log.add_figure("static", _figure(2.0), interactive=False)
    log.add_figure("interactive", {"data": [{"type": "scatter", "y": [1, 3, 2]}], "layout": {}})
    tracker.log_artifact("weights.txt", b"hello", media_type="text/plain")
    log.flush()
    tracker.end()
    return {"id": exp.experiment_id, "repo": repo}


def test_metric_downsampled_and_full(repo: Repository, logged: dict[str, Any]) -> None:
    client = TestClient(create_app(repo))
    run_id = logged["id"]
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["metric_names"] == ["acc", "loss"]
    small = client.get(f"/api/runs/{run_id}/metric", params={"name": "loss", "points": 100}).json()
    assert small["total"] == 10_000 and small["downsampled"]
    assert len(small["steps"]) <= 204
    assert small["values"][0] == 1.0 and small["steps"][-1] == 9999
    full = client.get(f"/api/runs/{run_id}/metric.json", params={"name": "loss"})
    assert "attachment" in full.headers["content-disposition"]
    data = full.json()
    assert len(data["values"]) == 10_000 and data["steps"][:3] == [0, 1, 2]
    acc = client.get(f"/api/runs/{run_id}/metric", params={"name": "acc"}).json()
    assert acc["values"] == [0.5, None]  # NaN is a gap, JSON has no NaN
    text = client.get(f"/api/runs/{run_id}/metric.csv", params={"name": "acc"}).text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["step", "acc"]
    assert rows[1] == ["0", "0.5"] and math.isnan(float(rows[2][1]))


def test_media_listed_and_served(repo: Repository, logged: dict[str, Any]) -> None:
    client = TestClient(create_app(repo))
    run_id = logged["id"]
    m = client.get(f"/api/runs/{run_id}").json()["media"]
    assert [e["step"] for e in m["texts"]["sample"]] == [0, 1, 2]
    blob = m["texts"]["sample"][1]["blob"]
    response = client.get(f"/api/runs/{run_id}/artifacts/{blob}")
    assert response.text == "<b>step 1</b>"
    assert response.headers["content-type"].startswith("text/plain")
    assert "sandbox" in response.headers["content-security-policy"]
    curve = m["figures"]["curve"]
    assert [f["step"] for f in curve] == [2, 5] and curve[0]["interactive"]
    assert set(curve[0]["formats"]) == {"image/png", "image/svg+xml"}
    assert curve[0]["formats"] == curve[1]["formats"]  # the same image is one blob
    assert m["figures"]["static"][0]["interactive"] is False
    plotly = m["figures"]["interactive"][0]["formats"][media.PLOTLY_JSON]
    assert client.get(f"/api/runs/{run_id}/artifacts/{plotly}").json()["data"][0]["y"] == [1, 3, 2]
    [file] = m["files"]
    download = client.get(f"/api/runs/{run_id}/artifacts/{file['blob']}", params={"download": 1})
    assert download.content == b"hello"
    assert 'filename="weights.txt"' in download.headers["content-disposition"]


def test_same_image_stored_once(repo: Repository, logged: dict[str, Any]) -> None:
    blobs = [p for p in (repo.path / "blobs").rglob("*") if p.is_file()]
    # 3 texts, curve PNG+SVG once, static PNG+SVG, one plotly JSON, one file, the environment
    assert len(blobs) == 3 + 2 + 2 + 1 + 1 + 1


def test_log_reader(repo: Repository, logged: dict[str, Any]) -> None:
    reader = LogReader(repo.root)
    assert reader.runs == [logged["id"]] and not reader.is_run
    run = reader.get_run("logged")
    assert run.is_run
    assert run.scalar_tags == {"loss", "acc"}
    assert run.text_tags == {"sample"}
    assert run.figure_tags == {"curve", "static", "interactive"}
    assert run.load_scalars("loss")[:2] == [(0, 1.0), (1, 0.5)]
    assert run.load_text("sample") == [
        (0, "<b>step 0</b>"),
        (1, "<b>step 1</b>"),
        (2, "<b>step 2</b>"),
    ]
    assert run.figure_iterations("curve") == [2, 5]
    image = run.load_figure("curve", iteration=5)
    assert image.png.startswith(b"\x89PNG") and b"<svg" in image.svg
    assert run.load_figure("interactive").data[0].y == (1, 3, 2)
    assert run.iterations[:3] == [0, 1, 2] and 5 in run.iterations
    with pytest.raises(ArtifactNotFound):
        run.load_figure("curve", iteration=99)
    with pytest.raises(ArtifactNotFound):
        run.load_text("nope")


def test_logger_needs_a_run_target() -> None:
    with pytest.raises(InvalidValue):
        Logger(object())
    with pytest.raises(InvalidValue):
        Logger(_FakeTarget()).set_global_it(1.5)  # type: ignore[arg-type]


class _FakeTarget:
    def log(self, *a: Any, **k: Any) -> None: ...
    def log_artifact(self, *a: Any, **k: Any) -> dict[str, Any]:
        return {}


def test_viewer_reads_without_writing(repo: Repository, logged: dict[str, Any]) -> None:
    before = tree_digest(repo.path)
    client = TestClient(create_app(repo))
    run_id = logged["id"]
    for path in [
        f"/api/runs/{run_id}",
        f"/api/runs/{run_id}/metric?name=loss",
        f"/api/runs/{run_id}/metric.csv?name=loss",
        "/api/runs?sort=metrics.loss.min",
    ]:
        assert client.get(path).status_code == 200
    assert tree_digest(repo.path) == before


def test_running_run_is_followed(repo: Repository) -> None:
    """A running run's new values reach the API as soon as the journal has them."""
    tracker = _tracker(repo)
    exp = tracker.start("live")
    client = TestClient(create_app(repo))
    tracker.log("loss", 1.0, step=0)
    tracker.flush()
    first = client.get(f"/api/runs/{exp.experiment_id}/metric", params={"name": "loss"}).json()
    assert first["total"] == 1
    tracker.log("loss", 0.5, step=1)
    tracker.log("new_metric", 3.0, step=1)
    tracker.flush()
    again = client.get(f"/api/runs/{exp.experiment_id}/metric", params={"name": "loss"}).json()
    assert again["values"] == [1.0, 0.5]
    run = client.get(f"/api/runs/{exp.experiment_id}").json()
    assert run["status"] == "running" and "new_metric" in run["metric_names"]
    tracker.end()


def test_tracker_log_text_and_figure(repo: Repository) -> None:
    tracker = _tracker(repo)
    exp = tracker.start("media")
    entry = tracker.log_text("notes", "hello", step=1)
    entries = tracker.log_figure("fig", {"data": [{"y": [1]}]}, step=2, interactive=False)
    tracker.end()
    assert entry["kind"] == "text" and entry["step"] == 1
    assert [e["kind"] for e in entries] == ["figure-static"]
    run = LogReader(repo).get_run(exp.experiment_id)
    assert run.load_text("notes") == [(1, "hello")]
    assert run.load_figure("fig", 2).data[0].y == (1,)


def test_sweep_run_logs_text_and_figures(repo: Repository) -> None:
    pytest.importorskip("coralx.sweeps.runner", reason="the sweep runner is not here")
    from .ui_demo_sweep import make_demo_store

    demo = make_demo_store(repo.root)
    client = TestClient(create_app(demo["repo"]))
    rows = client.get("/api/runs", params={"sweep": demo["sweep_id"], "status": "completed"})
    run_id = rows.json()["rows"][0]["id"]
    m = client.get(f"/api/runs/{run_id}").json()["media"]
    assert [e["step"] for e in m["texts"]["samples"]] == [0, 40, 80]
    activations = m["figures"]["activations"]
    assert [f["interactive"] for f in activations] == [True, True, False]


def test_sweep_run_without_a_store_writes_files(tmp_path: Path) -> None:
    pytest.importorskip("coralx.sweeps.runner", reason="the sweep runner is not here")
    from types import SimpleNamespace

    from coralx.sweeps import Run

    task = SimpleNamespace(out_dir=str(tmp_path / "out"), config={}, name="untracked")
    run = Run(task)  # type: ignore[arg-type]
    run.log_text("notes", "hello", step=3)
    run.log_figure("fig", {"data": [{"y": [1]}]}, step=4)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fig-4.json", "notes-3.txt"]
    assert (tmp_path / "out" / "notes-3.txt").read_text() == "hello"
