"""A sweep captures the code it runs once, in the parent, and every configuration's record
carries it: the same commit, branch, dirty flag and snapshot a single tracked run records,
without asking git again per configuration."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from coralx import Repository

from . import sweep_fixtures as fx
from .conftest import git

experiments = pytest.importorskip("coralx.experiments")


@pytest.fixture
def dirty_project(git_workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git work tree with a store in it, a modified tracked file and an untracked one."""
    monkeypatch.chdir(git_workdir)
    (git_workdir / "train.py").write_text("print('edited')\n")
    (git_workdir / "helper.py").write_text("X = 1\n")
    return git_workdir


def _counting_capture(monkeypatch: pytest.MonkeyPatch, log: Path) -> None:
    """Count calls of the capture function, in this process and in forked workers (which
    inherit the patch), by appending a line per call to ``log``."""
    from coralx import workspace

    real = workspace.capture

    def counted(*args: Any, **kwargs: Any) -> dict[str, Any]:
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(workspace, "capture", counted)


def _logging_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, log: Path) -> None:
    """Make GitPython in new processes (subprocess children) run a ``git`` that notes the pid
    of the Python process calling it, then runs the real git."""
    real_git = shutil.which("git")
    assert real_git is not None
    script = tmp_path / "logging-git"
    script.write_text(f'#!/bin/sh\necho "$PPID" >> "{log}"\nexec "{real_git}" "$@"\n')
    script.chmod(0o755)
    monkeypatch.setenv("GIT_PYTHON_GIT_EXECUTABLE", str(script))


def _code_fields(code: dict[str, Any]) -> dict[str, Any]:
    return {k: code.get(k) for k in ("commit", "branch", "dirty", "snapshot", "root", "skipped")}


@pytest.mark.parametrize("executor", ["inline", "fork", "subprocess"])
def test_sweep_records_the_code_captured_once(
    dirty_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executor: str
) -> None:
    repo = Repository(dirty_project, init=True)
    tracker = experiments.ExperimentTracker(repo)
    single = tracker.start("single")  # a run capturing its own code, as without a sweep
    tracker.end()
    expected = _code_fields(single.code)
    assert expected["dirty"] is True and expected["snapshot"]
    assert expected["commit"] == git(dirty_project, "rev-parse", "HEAD").strip()
    assert expected["branch"] == "main"

    captures = tmp_path / "captures.log"
    git_calls = tmp_path / "git-calls.log"
    _counting_capture(monkeypatch, captures)
    _logging_git(monkeypatch, tmp_path, git_calls)
    out = fx.grid_exp.run_sweep(repo=repo, executor=executor, workers=2, new=True)
    assert out.status == "completed", out.results.failed

    # Once, in this process, for six configurations.
    assert captures.read_text().split() == [str(os.getpid())]
    if git_calls.exists():  # only this process may have run git (if it imported GitPython now)
        assert set(git_calls.read_text().split()) <= {str(os.getpid())}
    records = experiments.ExperimentTracker(repo).list(sweep_id=out.sweep_id)
    assert len(records) == 6
    for exp in records:
        assert _code_fields(exp.code) == expected
        assert exp.branch == "main"


def test_start_records_the_code_it_is_given(repo: Repository) -> None:
    tracker = experiments.ExperimentTracker(repo)
    code = {"commit": "a" * 40, "branch": "dev", "dirty": True, "snapshot": "b" * 40}
    exp = tracker.start("given", code=code)
    tracker.end()
    again = experiments.ExperimentTracker(repo).get(exp.experiment_id)
    assert _code_fields(again.code) == {**code, "root": None, "skipped": []}
    assert again.branch == "dev"


@pytest.mark.parametrize("executor", ["inline", "fork", "subprocess"])
def test_numpy_scalars_cross_processes_as_plain_numbers(executor: str) -> None:
    pytest.importorskip("numpy")
    out = fx.numpy_values.run_sweep(executor=executor, workers=2, track=False)
    assert out.status == "completed", out.results.failed
    values = sorted((r["value"], r["from_config"]) for r in out.results)
    assert values == [(1.0, 0.5), (2.0, 1.0)]
    for r in out.results:
        assert type(r["value"]) is float and type(r["from_config"]) is float


def test_fork_tasks_equal_by_value_but_not_type_stay_apart() -> None:
    # A task reaches a fork worker as the fields that changed since the one before it: a
    # setup context of 1, then 1.0, then True compares equal, and must arrive as itself.
    from coralx.sweeps.executors import ForkExecutor
    from coralx.sweeps.task import FunctionRef, Task

    fn = FunctionRef.of(fx.setup_types)
    values: list[Any] = [1, 1.0, True, 0, 0.0, False]
    tasks = [
        Task(fn, name=f"v{i}", index=i, config={"name": "same"}, context={"v": v})
        for i, v in enumerate(values)
    ]
    executor = ForkExecutor()
    executor.start(1)
    try:
        outcomes = {t.index: o for t, o in executor.run_all(tasks, 1)}
    finally:
        executor.shutdown()
    got = [outcomes[i].result["type"] for i in range(len(values))]  # type: ignore[index]
    assert got == ["int", "float", "bool", "int", "float", "bool"]
