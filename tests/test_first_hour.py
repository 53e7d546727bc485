"""What a new user met in their first hour (issue 12), each at the mechanism that changed:
seeds, finding the store, reports that raise, --set on a swept key, the sweep's identity,
run names, cancelled counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from coralx import Repository
from coralx.cli.main import cli
from coralx.errors import InvalidConfig
from coralx.experiments import ExperimentTracker
from coralx.sweeps import SweepRecord, grid, list_sweeps
from coralx.sweeps._cli import SweepFailedExit, main, progress_text
from coralx.sweeps.config import check_not_swept, replace_axis
from coralx.sweeps.runner import Progress

from . import first_hour_fixtures as fx

ROOT = Path(__file__).resolve().parent.parent


# -- B: seeds -----------------------------------------------------------------------------------


def test_every_configuration_has_a_distinct_reproducible_seed(repo: Repository) -> None:
    first = fx.digits.run_sweep(repo=repo, executor="inline")
    seeds = [r["seed"] for r in first.results]
    assert all(isinstance(s, int) for s in seeds) and len(set(seeds)) == 4
    assert [r.config.seed for r in first.results] == seeds  # in the config, so in the record
    record = SweepRecord.load(repo, str(first.sweep_id))
    assert record.seed == 0  # the default base seed, recorded
    again = fx.digits.run_sweep(repo=repo, executor="inline", new=True)
    assert [r["seed"] for r in again.results] == seeds
    assert [r["val_acc"] for r in again.results] == [r["val_acc"] for r in first.results]
    other = fx.digits.derive("digits-seeded", seed=5).run_sweep(repo=repo, executor="inline")
    assert SweepRecord.load(repo, str(other.sweep_id)).seed == 5
    assert not set(r["seed"] for r in other.results) & set(seeds)
    # A configuration's own seed is kept (repeat() gives each copy one).
    own = fx.digits.build_configs(overrides={"seed": 7})
    assert [c.seed for c in own] == [7, 7, 7, 7]
    # A seed from the setup context stands for the configurations' own, as it always did.
    ctx = fx.digits.derive("digits-ctx")
    ctx.setup(lambda: {"seed": 11})
    assert [r["seed"] for r in ctx.run_sweep(repo=repo, executor="inline").results] == [11] * 4


# -- B: the store ---------------------------------------------------------------------------------


def test_a_sweep_finds_or_creates_its_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    made = Repository("./checkpoints", init=True)  # the README's tracker example
    there = fx.digits.run_sweep(repo="./checkpoints", executor="inline")
    assert there.status == "completed" and not there.created_store
    assert there.store == str(made.path) and list_sweeps(made)
    monkeypatch.chdir(tmp_path / "checkpoints")
    assert fx.digits.run_sweep(executor="inline").store == str(made.path)  # found from below
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    monkeypatch.chdir(fresh)
    created = fx.digits.run_sweep(executor="inline")  # no store anywhere up: one is made here
    assert created.created_store and created.store == str(fresh / ".coralx")
    assert list_sweeps(Repository(fresh))


def test_an_error_before_the_plan_shows_no_empty_progress_bar(
    repo: Repository, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(fx.digits, ["--sweep", "0123456789abcdef0123", "-C", str(repo.root)], {})
    captured = capsys.readouterr()
    assert "error:" in captured.err
    assert "None" not in captured.out + captured.err and "0/" not in captured.out


# -- B: reports -----------------------------------------------------------------------------------


def test_a_report_that_raises_keeps_the_results(
    repo: Repository, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FIRST_HOUR_FAIL", "1")
    with pytest.raises(SweepFailedExit) as exited:  # a sweep with failures exits 7
        main(fx.digits, ["-C", str(repo.root), "--executor", "inline"], {})
    result = exited.value.result
    out = capsys.readouterr().out
    assert result.status == "failed" and len(result.results.failed) == 4
    assert "hidden16_lr0.001" in out and "diverged" in out  # the table and the errors
    assert "the report raised AttributeError" in out
    assert "first_hour_fixtures.py:" in str(result.report_error)
    record = SweepRecord.load(repo, str(result.sweep_id))
    assert len(record.runs) == 4 and record.verdict is not None
    assert record.verdict["error"] == result.report_error
    shown = CliRunner().invoke(cli, ["-C", str(repo.root), "sweep", "show", result.sweep_id])
    assert "the report raised AttributeError" in shown.output


# -- B: --set and --set-axis ----------------------------------------------------------------------


def test_set_on_a_swept_key_is_an_error_and_set_axis_replaces_the_axis() -> None:
    configs = grid({"hidden": [16, 64], "lr": [0.001, 0.01]})
    with pytest.raises(InvalidConfig, match=r"--set-axis hidden=.*"):
        check_not_swept(configs, {"hidden": 32})
    check_not_swept(configs, {"epochs": 3})  # not swept: fine
    replaced = replace_axis(configs, "hidden", [32])
    assert [c.name for c in replaced] == ["hidden32_lr0.001", "hidden32_lr0.01"]
    assert replaced.shape == (1, 2) and {c.hidden for c in replaced} == {32}
    inner = replace_axis(configs, "lr", [0.1, 0.2, 0.3])
    assert inner.shape == (2, 3) and inner[5].name == "hidden64_lr0.3"
    with pytest.raises(InvalidConfig, match="no axis of this sweep sets 'epochs'"):
        replace_axis(configs, "epochs", [1])
    built = fx.digits.build_configs(axis_overrides={"hidden": [8, 32, 128]})
    assert built.shape == (3, 2) and built[0].name == "hidden8_lr0.001"
    with pytest.raises(InvalidConfig, match="would override 'hidden'"):
        fx.digits.build_configs(overrides={"hidden": 32})


# -- B: the sweep's identity ----------------------------------------------------------------------

SCRIPT = """
import coralx

@coralx.experiment(name="ident", metric="y", mode="max")
def ident(config, run):
    return {"y": config.x * 2}

@ident.configs
def configs():
    return coralx.grid({"x": [1, 2]})

if __name__ == "__main__":
    ident.run()
"""


def test_a_sweep_continues_however_the_interpreter_was_launched(tmp_path: Path) -> None:
    (tmp_path / "sweep.py").write_text(SCRIPT, encoding="utf-8")
    Repository.init(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    plain = [sys.executable, "sweep.py", "--json"]
    profiled = [sys.executable, "-m", "cProfile", "-o", "prof.out", "sweep.py", "--json"]
    outs = []
    for cmd in (plain, profiled):
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        outs.append(json.loads(done.stdout))
    assert outs[1]["sweep_id"] == outs[0]["sweep_id"]
    assert outs[1]["counts"]["skipped"] == 2 and outs[1]["counts"]["completed"] == 0
    assert len(list_sweeps(Repository(tmp_path))) == 1


# -- C: names -------------------------------------------------------------------------------------


def test_sweep_runs_are_named_by_configuration_and_findable(repo: Repository) -> None:
    fx.digits.run_sweep(repo=repo, executor="inline")
    tracker = ExperimentTracker(repo)
    names = sorted(e.name for e in tracker.list())
    assert names[0] == "digits-sweep/hidden16_lr0.001" and len(names) == 4
    assert all("name" not in e.params for e in tracker.list())  # no second "name" column
    assert len(tracker.list(name="hidden64*")) == 2
    assert len(tracker.list(name="digits-sweep")) == 4
    assert len(tracker.list(name="digits-sweep/hidden16*")) == 2
    listed = CliRunner().invoke(
        cli, ["-C", str(repo.root), "exp", "list", "--name", "hidden64*", "--json"]
    )
    assert listed.exit_code == 0, listed.output
    assert sorted(r["name"] for r in json.loads(listed.output)) == [
        "digits-sweep/hidden64_lr0.001",
        "digits-sweep/hidden64_lr0.01",
    ]


def test_viewer_finds_runs_by_configuration_name(repo: Repository) -> None:
    from coralx.web.records import RecordCache, RunQuery

    fx.digits.run_sweep(repo=repo, executor="inline")
    rows = [r for r in RecordCache(repo.path).rows() if RunQuery(name="hidden64*").matches(r)]
    assert len(rows) == 2


# -- C: cancelled runs are counted ----------------------------------------------------------------


def test_progress_counts_cancelled_runs() -> None:
    text = progress_text(Progress(total=4, cancelled=2))
    assert "2 cancelled" in text
    assert "cancelled" not in progress_text(Progress(total=4, done=4))


# -- C: the heatmap -------------------------------------------------------------------------------


def test_heatmap_cells_are_configurations_of_the_plan_with_repeats_folded(
    repo: Repository,
) -> None:
    from starlette.testclient import TestClient

    from coralx.web.app import create_app

    fx.repeated.run_sweep(repo=repo, executor="inline", overrides={"epochs": 8})
    last = fx.repeated.run_sweep(repo=repo, executor="inline")  # same sweep, a new plan
    data = TestClient(create_app(repo)).get(f"/api/sweeps/{last.sweep_id}").json()
    assert data["shape"] == [2, 2] and data["repeats"] == 3
    assert data["runs"] == 24 and data["runs_outside_plan"] == 12  # the epochs=8 runs
    cell = data["cells"][0]
    assert cell["config_name"] == "hidden16_lr0.001"
    assert cell["aggregate"] == "mean of 3 of 3 repeats"
    assert [r["label"] for r in cell["runs"]] == ["r0 run", "r1 run", "r2 run"]
    values = [r["val_acc"] for r in last.results if r.config.hidden == 16 and r.config.lr == 0.001]
    assert cell["value"] == pytest.approx(sum(values) / 3)
    assert data["grid"][0][0] == pytest.approx(cell["value"])


# -- C: du reports the bytes and the space on disk ---------------------------------------------


def test_du_reports_bytes_and_space_on_disk(repo: Repository) -> None:
    import numpy as np

    for i in range(5):  # small tensors: small chunk files, each taking at least a block
        repo.stage_weights({"w": np.full(64, i, dtype=np.float32)})
        repo.commit(f"c{i}")
    report = repo.du()
    expected = 0
    files = 0
    for dirpath, _dirs, names in os.walk(repo.path / "chunks"):
        for name in names:
            expected += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            files += 1
    assert report.disk_bytes == expected and report.files == files >= 5
    assert report.disk_bytes > report.stored_bytes  # each small file rounds up to a block
    out = CliRunner().invoke(cli, ["-C", str(repo.root), "du"]).output
    assert f"on disk ({files} files, in blocks)" in out
    assert (
        json.loads(CliRunner().invoke(cli, ["-C", str(repo.root), "du", "--json"]).output)[
            "disk_bytes"
        ]
        == expected
    )


# -- A: a run that committed weights names them everywhere, even when it failed --------------------


def test_a_failed_run_exposes_its_last_commit_everywhere(repo: Repository) -> None:
    import numpy as np
    from starlette.testclient import TestClient

    from coralx.web.app import create_app

    tracker = ExperimentTracker(repo)
    commits = []
    with pytest.raises(RuntimeError), tracker.start("digits", params={"lr": 0.1}) as exp:
        for epoch in range(2):
            tracker.log("val_acc", 0.5 + epoch / 10, step=epoch)
            repo.stage_weights({"w": np.full(8, epoch, dtype=np.float32)})
            commits.append(repo.commit(f"epoch {epoch}").commit_hash)
        raise RuntimeError("diverged")
    run_id = exp.experiment_id
    got = tracker.get(run_id)
    assert str(getattr(got.status, "value", got.status)) == "failed"
    assert got.commit_hash == commits[-1] and got.weight_commits == commits
    [best] = tracker.find_best("val_acc", mode="max", status="failed")
    assert best["commit_hash"] == commits[-1]
    shown = json.loads(
        CliRunner().invoke(cli, ["-C", str(repo.root), "exp", "show", run_id, "--json"]).output
    )
    assert shown["commit_hash"] == commits[-1]
    viewer = TestClient(create_app(repo)).get(f"/api/runs/{run_id}").json()
    assert viewer["commit_hash"] == commits[-1]


# -- a fork worker of a process whose sync thread was busy ------------------------------------


def test_a_fork_child_does_not_inherit_the_syncers_held_lock(tmp_path: Path) -> None:
    from coralx.records.sync import syncer

    syncer._io.acquire()  # as the sync thread holds it through a batch of fsyncs
    try:
        (tmp_path / "record.json").write_text("{}")
        syncer.add(tmp_path / "record.json")  # a write not yet durable
        pid = os.fork()
        if pid == 0:  # the child: a fork worker waiting for its records before it exits
            done = syncer.wait(timeout=5)
            os._exit(0 if done else 1)
        _, status = os.waitpid(pid, 0)
    finally:
        syncer._io.release()
    assert os.waitstatus_to_exitcode(status) == 0
