"""Sweeps with a store: records, crashes marked by the parent, caching and resume as children,
parallel runs writing the same records, weights and artifacts linked to runs, the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from coralx import Repository
from coralx.cli.main import cli
from coralx.errors import SweepNotFound
from coralx.sweeps import SweepRecord

from . import sweep_fixtures as fx

ExperimentTracker = pytest.importorskip("coralx.experiments").ExperimentTracker


def _records(repo: Repository, sweep_id: str) -> list[Any]:
    return ExperimentTracker(repo).list(sweep_id=sweep_id)


def _status(exp: Any) -> str:
    return str(getattr(exp.status, "value", exp.status))


def test_crashes_fail_alone_and_rerun_as_children(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEP_TEST_SEGV", "lr1_w16")
    monkeypatch.setenv("SWEEP_TEST_RAISE", "lr2_w32")
    first = fx.grid_exp.run_sweep(repo=repo, workers=2)
    assert first.status == "failed"
    assert first.counts == {"completed": 4, "failed": 2, "skipped": 0, "cancelled": 0}
    tracker = ExperimentTracker(repo)
    segv = tracker.get(first.results[0, 1].experiment_id)
    assert _status(segv) == "failed"
    assert "SIGSEGV" in segv.error_message
    assert "Segmentation fault" in segv.error_detail  # the tail of its stderr
    assert segv.sweep["config_name"] == "lr1_w16" and segv.sweep["position"] == [0, 1]
    raised = tracker.get(first.results[1, 2].experiment_id)
    assert _status(raised) == "failed" and "bad value in lr2_w32" in raised.error_message
    ok = tracker.get(first.results[0, 0].experiment_id)
    assert _status(ok) == "completed" and ok.result == {"score": pytest.approx(0.8)}
    assert ok.data == {"shape": {"width": 8}} and ok.params["lr"] == 0.1
    assert ok.metrics_summary["loss"]["count"] == 3
    failed_ids = {segv.experiment_id, raised.experiment_id}

    monkeypatch.delenv("SWEEP_TEST_SEGV")
    monkeypatch.delenv("SWEEP_TEST_RAISE")
    second = fx.grid_exp.run_sweep(repo=repo, workers=2)
    assert second.sweep_id == first.sweep_id
    assert second.status == "completed"
    assert second.counts == {"completed": 2, "failed": 0, "skipped": 4, "cancelled": 0}
    rerun = [r for r in second.results if not r.cached]
    assert {r.parent_experiment for r in rerun} == failed_ids
    for r in rerun:
        child = tracker.get(r.experiment_id)
        assert child.parent_experiment in failed_ids and _status(child) == "completed"
    assert len(_records(repo, first.sweep_id)) == 8

    third = fx.grid_exp.run_sweep(repo=repo)
    assert third.counts["skipped"] == 6 and len(_records(repo, first.sweep_id)) == 8
    rerun_all = fx.grid_exp.run_sweep(repo=repo, rerun=True, executor="fork", workers=2)
    assert rerun_all.counts["completed"] == 6 and len(_records(repo, first.sweep_id)) == 14


def _comparable(repo: Repository, sweep_id: str) -> list[tuple[Any, ...]]:
    rows = []
    for exp in _records(repo, sweep_id):
        s = dict(exp.sweep)
        s.pop("sweep_id")
        rows.append((json.dumps(s, sort_keys=True), _status(exp), exp.params, exp.result, exp.data))
    return sorted(rows, key=lambda r: r[0])


@pytest.mark.parametrize("executor", ["fork", "subprocess"])
def test_two_workers_write_the_same_records_as_one(repo: Repository, executor: str) -> None:
    one = fx.grid_exp.run_sweep(repo=repo, executor=executor, workers=1, new=True)
    two = fx.grid_exp.run_sweep(repo=repo, executor=executor, workers=2, new=True)
    assert one.sweep_id != two.sweep_id
    assert _comparable(repo, one.sweep_id) == _comparable(repo, two.sweep_id)
    assert len(_comparable(repo, one.sweep_id)) == 6


@pytest.mark.parametrize("executor", ["inline", "fork", "subprocess"])
def test_run_records_data_files_artifacts_and_weights(repo: Repository, executor: str) -> None:
    out = fx.tracked.run_sweep(repo=repo, executor=executor)
    r = out.results[0]
    assert r.ok, r.error
    exp = ExperimentTracker(repo).get(r.experiment_id)
    assert exp.data["eval"] == {"squad": {"f1": 88.5}}
    names = {a["name"]: a for a in exp.artifacts}
    assert {"notes.txt", "raw.bin", "summary.json", "text.txt", "file.txt"} <= set(names)
    assert names["summary.json"]["media_type"] == "application/json"
    from coralx.records.blobs import BlobStore

    assert BlobStore(repo).get(names["notes.txt"]["blob"]) == b"notes of a"
    # Checkpoint every 2 steps keeping the best 2 by loss: steps 0 (0.9), 2 (0.7), 4 (0.4)
    # are offered; 0 and 2 are committed while fewer than 2 are kept, 4 beats 0.9.
    kept = r["checkpoints"]
    assert [c["step"] for c in kept] == [4, 2]
    assert len(exp.weight_commits) == 3
    assert exp.commit_hash == kept[0]["commit"]
    weights = repo.get_all_weights(exp.commit_hash)
    assert weights["w"].tolist() == [4.0] * 4
    assert repo.resolve(exp.experiment_id) == exp.commit_hash


def test_cancelled_run_is_recorded_and_rerun_as_child(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEP_TEST_INTERRUPT", "1")
    first = fx.tracked.run_sweep(repo=repo, executor="subprocess")
    assert first.status == "failed" or first.status == "cancelled"
    cancelled = first.results[0]
    assert cancelled.status == "cancelled"
    exp = ExperimentTracker(repo).get(cancelled.experiment_id)
    assert _status(exp) == "cancelled"
    monkeypatch.delenv("SWEEP_TEST_INTERRUPT")
    second = fx.tracked.run_sweep(repo=repo, executor="subprocess")
    assert second.results[0].ok
    # the config changed (interrupt False), so it is a new hash: a fresh run, not a child
    assert second.results[0].parent_experiment is None


def test_report_verdict_is_stored_and_report_only(repo: Repository) -> None:
    fx.plain.report(lambda results: results.best("double", "max")["double"] == 6)
    try:
        out = fx.plain.run_sweep(repo=repo, executor="fork")
        assert out.verdict == "supports"
        record = SweepRecord.load(repo, out.sweep_id)
        assert record.verdict["verdict"] == "supports"
        fx.plain.report(lambda results: "refutes")
        again = fx.plain.run_sweep(repo=repo, report_only=True)
        assert again.verdict == "refutes" and again.sweep_id == out.sweep_id
        assert SweepRecord.load(repo, out.sweep_id).verdict["verdict"] == "refutes"
        assert [r["double"] for r in again.results] == [2, 4, 6]
    finally:
        fx.plain._report_fn = None


def test_continue_a_given_sweep_and_unknown_sweeps(repo: Repository) -> None:
    first = fx.plain.run_sweep(repo=repo, executor="fork")
    fresh = fx.plain.run_sweep(repo=repo, executor="fork", new=True)
    assert fresh.sweep_id != first.sweep_id and fresh.counts["completed"] == 3
    # A prefix past the 12 time digits: both sweeps may start within the same 256 ms.
    back = fx.plain.run_sweep(repo=repo, sweep_id=first.sweep_id[:16])
    assert back.sweep_id == first.sweep_id and back.counts["skipped"] == 3
    with pytest.raises(SweepNotFound):
        fx.plain.run_sweep(repo=repo, sweep_id="ffffffffffffffffffff")


def test_sweep_cli_list_show_and_run(repo: Repository, tmp_path: Path) -> None:
    out = fx.grid_exp.run_sweep(repo=repo, executor="fork", workers=2)
    runner = CliRunner()
    listed = runner.invoke(cli, ["-C", str(repo.root), "sweep", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert rows[0]["sweep_id"] == out.sweep_id and rows[0]["counts"] == {"completed": 6}
    record = SweepRecord.load(repo, out.sweep_id)
    record.status = "running"  # as a sweep process killed with kill -9 leaves it
    record.save(repo)
    rows = json.loads(runner.invoke(cli, ["-C", str(repo.root), "sweep", "list", "--json"]).output)
    assert rows[0]["status"] == "stopped"
    shown = runner.invoke(cli, ["-C", str(repo.root), "sweep", "show", out.sweep_id[:8]])
    assert shown.exit_code == 0, shown.output
    assert "lr2_w32" in shown.output and "completed" in shown.output
    info = json.loads(
        runner.invoke(cli, ["-C", str(repo.root), "sweep", "show", out.sweep_id, "--json"]).output
    )
    assert info["rows"][0]["metric"] == pytest.approx(0.8 / 3)  # the min of loss
    missing = runner.invoke(cli, ["-C", str(repo.root), "sweep", "show", "abcdef"])
    assert missing.exit_code == 4

    script = tmp_path / "script.py"
    script.write_text(
        "import coralx\n"
        "@coralx.experiment(name='cli-run')\n"
        "def f(config):\n"
        "    return {'y': config.x + 1}\n"
        "@f.configs\n"
        "def c():\n"
        "    return coralx.grid({'x': [1, 2]})\n"
    )
    ran = runner.invoke(
        cli, ["-C", str(repo.root), "sweep", "run", str(script), "--executor", "inline", "-q"]
    )
    assert ran.exit_code == 0, ran.output
    cli_rows = json.loads(
        runner.invoke(
            cli, ["-C", str(repo.root), "sweep", "list", "--name", "cli-run", "--json"]
        ).output
    )
    assert cli_rows[0]["counts"] == {"completed": 2}


SLOW_SCRIPT = """
import os, time
import coralx

@coralx.experiment(name="slow")
def slow(config, run):
    if os.environ.get("SLOW") == "1" and config.i >= 1:
        time.sleep(120)
    return {"i": config.i}

@slow.configs
def configs():
    return coralx.grid({"i": [0, 1, 2, 3]})

if __name__ == "__main__":
    slow.run()
"""


@pytest.mark.parametrize("executor", ["subprocess", "fork"])
def test_ctrl_c_cancels_cleanly_and_running_again_continues(
    repo: Repository, tmp_path: Path, executor: str
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "slow.py"
    script.write_text(SLOW_SCRIPT)
    cmd = [sys.executable, str(script), "-C", str(repo.root), "--executor", executor]
    proc = subprocess.Popen(
        [*cmd, "--workers", "2", "-q"],
        env={**os.environ, "SLOW": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        records = [json.loads(p.read_text()) for p in (repo.path / "experiments").glob("*.json")]
        states = sorted(r["status"] for r in records)
        if states == ["completed", "running", "running"]:  # i=0 done, 1 and 2 sleeping
            break
        time.sleep(0.1)
    else:
        proc.kill()
        raise AssertionError(f"the sweep never had two runs going: {proc.communicate()}")
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run again to continue" in err
    listed = CliRunner().invoke(cli, ["-C", str(repo.root), "sweep", "list", "--json"])
    assert json.loads(listed.output)[0]["status"] == "cancelled"
    tracker = ExperimentTracker(repo)
    statuses = sorted((e.params["i"], _status(e)) for e in tracker.list())
    assert statuses == [(0, "completed"), (1, "cancelled"), (2, "cancelled")]
    cancelled = {e.experiment_id for e in tracker.list() if _status(e) == "cancelled"}

    again = subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=True)
    data = json.loads(again.stdout)
    assert data["counts"] == {"completed": 3, "failed": 0, "skipped": 1, "cancelled": 0}
    by_i = {r["config"]["i"]: r for r in data["results"]}
    assert by_i[0]["cached"] and not by_i[3]["cached"]
    parents = {tracker.get(by_i[i]["experiment_id"]).parent_experiment for i in (1, 2)}
    assert parents == cancelled
    assert tracker.get(by_i[3]["experiment_id"]).parent_experiment is None
