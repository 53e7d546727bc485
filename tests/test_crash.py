"""Crashes and many writers: kill -9 in the middle of a run, sixteen processes at once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from coralx import Repository
from coralx.experiments import ExperimentTracker

CHILD = textwrap.dedent(
    """
    import sys, time
    from coralx import Repository
    from coralx.experiments import ExperimentTracker

    tracker = ExperimentTracker(Repository(sys.argv[1], init=True))
    exp = tracker.start("doomed", params={"lr": 0.1})
    for i in range(1000):                  # a burst, then a pause
        tracker.log("burst", float(i), step=i)
    print(exp.experiment_id, flush=True)
    time.sleep(1.5)
    step = 0
    while True:                            # then log the time, until killed
        tracker.log("clock", time.time(), step=step)
        step += 1
        time.sleep(0.001)
    """
)


def test_kill_9_marks_the_run_failed_and_keeps_what_was_logged(tmp_path: Path) -> None:
    store = tmp_path / "store"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(store)], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        experiment_id = child.stdout.readline().strip()
        assert len(experiment_id) == 20, experiment_id
        time.sleep(5.0)  # 1.5 s of pause, then 3.5 s of logging the clock
        killed_at = time.time()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()

    tracker = ExperimentTracker(Repository(store))
    run = tracker.get(experiment_id)
    assert run.status == "failed"
    assert "gone" in (run.error_message or "")
    assert [m.value for m in run.get_metric_history("burst")] == [float(i) for i in range(1000)]
    clock = [m.value for m in run.get_metric_history("clock")]
    old_enough = [v for v in clock if v < killed_at - 2.0]
    assert old_enough, "the child logged nothing more than 2 s before it was killed"
    # Every value logged more than 2 s before the kill is there, in order, none missing.
    steps = [m.step for m in run.get_metric_history("clock")]
    assert steps == list(range(len(steps)))
    assert max(clock) >= killed_at - 2.0
    assert run.metrics_summary["burst"]["count"] == 1000
    assert run.metrics_summary["clock"]["count"] == len(clock)
    assert [e.experiment_id for e in tracker.list(status="running")] == []


WORKER = textwrap.dedent(
    """
    import sys
    from coralx import Repository
    from coralx.experiments import ExperimentTracker

    worker = int(sys.argv[2])
    tracker = ExperimentTracker(Repository(sys.argv[1], init=True), capture_code=False)
    for i in range(20):
        params = {"worker": worker, "i": i}
        with tracker.start(f"w{worker}-{i}", params=params, tags=[f"w{worker}"]):
            for step in range(10):
                tracker.log("loss", worker + i / 100 + step / 1000, step=step)
    print("done", flush=True)
    """
)


@pytest.mark.slow
def test_sixteen_processes_share_one_uninitialised_store(tmp_path: Path) -> None:
    store = tmp_path / "shared"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(store), str(w)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(16)
    ]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        assert out.strip() == "done"

    folder = store / ".coralx" / "experiments"
    records = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    assert len(records) == 320
    assert {r["status"] for r in records} == {"completed"}
    assert all(r["metrics_summary"]["loss"]["count"] == 10 for r in records)
    names = {r["name"] for r in records}
    assert names == {f"w{w}-{i}" for w in range(16) for i in range(20)}

    # The index holds exactly the records, as they are.
    db = sqlite3.connect(store / ".coralx" / "index.sqlite")
    try:
        rows = dict(db.execute("SELECT id, revision FROM experiments").fetchall())
        tag_rows = db.execute("SELECT count(*) FROM tags").fetchone()[0]
        metric_rows = db.execute("SELECT count(*) FROM metrics").fetchone()[0]
        (check,) = db.execute("PRAGMA integrity_check").fetchone()
    finally:
        db.close()
    assert check == "ok"
    assert rows == {r["experiment_id"]: r["revision"] for r in records}
    assert tag_rows == 320 and metric_rows == 320
    tracker = ExperimentTracker(Repository(store))
    assert tracker.get_summary()["by_status"] == {"completed": 320}
    assert len(tracker.list(tags=["w7"])) == 20
    best = tracker.find_best("loss", mode="min", limit=1)[0]
    assert best["name"] == "w0-0" and best["best_value"] == 0.0
    assert os.listdir(store) == [".coralx"]
