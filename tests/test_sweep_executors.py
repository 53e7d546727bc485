"""Executors, without a store: isolation, agreement, parallelism, seeding, bad input."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from coralx.errors import InvalidValue, MissingDependency
from coralx.sweeps import Executor, InlineExecutor, Outcome, Task, get_executor
from coralx.sweeps._child import execute_task

from . import sweep_fixtures as fx

ISOLATED = ["fork", "subprocess"]


def _summary(result: Any) -> list[tuple[str, str, Any]]:
    return [(r.name, r.status, r.result) for r in result.results]


@pytest.mark.parametrize("executor", ISOLATED)
def test_segfault_and_exception_fail_only_their_configuration(
    executor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEP_TEST_SEGV", "lr1_w16")
    monkeypatch.setenv("SWEEP_TEST_RAISE", "lr2_w32")
    out = fx.grid_exp.run_sweep(executor=executor, workers=2, track=False)
    rs = out.results
    assert rs.shape == (2, 3)
    assert [r.name for r in rs.failed] == ["lr1_w16", "lr2_w32"]
    assert len(rs.completed) == 4
    assert out.status == "failed"
    segv = rs[0, 1]
    assert segv.error["type"] == "Crashed"
    assert "SIGSEGV" in segv.error["message"]
    # What the crashed run wrote is kept from its log (faulthandler's report follows it there
    # when the worker's fault handler could be pointed at the log; in a long pytest session it
    # is not always, so only the run's own output is asserted).
    assert "about to crash" in segv.error["stderr_tail"]
    raised = rs[1, 2]
    assert raised.error["type"] == "ValueError"
    assert "bad value in lr2_w32" in raised.error["message"]
    assert "Traceback" in raised.error["traceback"]
    assert rs[0, 0].result == {"score": pytest.approx(0.8)}
    assert rs[1, 0].metrics["loss"]["count"] == 3


def test_subprocess_keeps_the_tail_of_stderr(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    task = _task(fx.grid_exp, {"name": "x", "lr": 0.1, "width": 1, "crash": "segv"}, tmp_path)
    out = get_executor("subprocess").run(task)
    assert out.status == "failed" and out.crashed
    assert "about to crash" in out.error["stderr_tail"]
    assert "Segmentation fault" in out.error["stderr_tail"]  # faulthandler's report
    task = _task(fx.grid_exp, {"name": "y", "lr": 0.1, "width": 1, "crash": "exit"}, tmp_path)
    out = get_executor("subprocess").run(task)
    assert out.status == "failed" and out.error["returncode"] == 3
    assert "exited with status 3" in out.error["message"]


def _task(exp: Any, config: dict, tmp_path: Any) -> Task:
    import sys

    from coralx.sweeps.task import FunctionRef

    return Task(
        fn=FunctionRef.of(exp),
        config=config,
        name=config["name"],
        log_dir=str(tmp_path),
        sys_path=list(sys.path),
    )


def test_inline_fork_and_subprocess_agree() -> None:
    outs = {
        ex: _summary(fx.plain.run_sweep(executor=ex, track=False))
        for ex in ("inline", "fork", "subprocess")
    }
    assert outs["inline"] == outs["fork"] == outs["subprocess"]
    assert [r[2]["double"] for r in outs["inline"]] == [2, 4, 6]


@pytest.mark.parametrize("executor", ISOLATED)
def test_two_workers_give_the_same_results_as_one(executor: str) -> None:
    one = fx.grid_exp.run_sweep(executor=executor, workers=1, track=False)
    two = fx.grid_exp.run_sweep(executor=executor, workers=2, track=False)
    assert _summary(one) == _summary(two)


@pytest.mark.parametrize("executor", ["inline", "fork", "subprocess"])
def test_seeding_reproduces(executor: str) -> None:
    first = fx.seeded.run_sweep(executor=executor, track=False).results
    again = fx.seeded.run_sweep(executor=executor, track=False).results
    assert [r.result for r in first] == [r.result for r in again]
    draws = [r["random"] for r in first]
    assert len(set(draws)) == 3  # repeats have distinct seeds: 7, 8, 9
    assert [r["seed"] for r in first] == [7, 8, 9]
    import random

    import numpy as np

    random.seed(8)
    np.random.seed(8)
    assert first[0, 1]["random"] == random.random()
    assert first[0, 1]["numpy"] == float(np.random.rand())


def test_custom_executor_plugs_in() -> None:
    seen: list[str] = []

    class Recording(Executor):
        name = "recording"

        def run(self, task: Task) -> Outcome:
            seen.append(task.name)
            return execute_task(task, prefer_local=True)

    out = fx.plain.run_sweep(executor=Recording(), track=False)
    assert seen == ["x1", "x2", "x3"]
    assert [r["double"] for r in out.results] == [2, 4, 6]
    with pytest.raises(TypeError):
        Executor()  # type: ignore[abstract]


def test_bad_executors_fail_before_anything_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidValue, match="unknown executor 'threads'"):
        fx.plain.run_sweep(executor="threads", track=False)
    real = importlib.util.find_spec

    def no_ray(name: str, *args: Any) -> Any:
        return None if name == "ray" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", no_ray)
    with pytest.raises(MissingDependency, match=r"pip install 'coralx\[ray\]'"):
        get_executor("ray")
    with pytest.raises(MissingDependency):
        get_executor("ray://head:10001")
    assert isinstance(get_executor("inline"), InlineExecutor)


def test_inline_runs_one_at_a_time() -> None:
    assert InlineExecutor.max_workers == 1
    out = fx.plain.run_sweep(executor="inline", workers=4, track=False)
    assert out.status == "completed"


@pytest.mark.slow
def test_ray_executor_runs_a_sweep() -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'coralx[ray]')")
    from coralx.sweeps import RayExecutor

    out = fx.plain.run_sweep(executor=RayExecutor(), workers=2, track=False)
    assert [r["double"] for r in out.results] == [2, 4, 6]
    assert out.status == "completed"


def test_a_crash_tail_keeps_the_runs_last_output_before_a_long_fault_report(tmp_path) -> None:
    from coralx.sweeps.task import read_tail

    log = tmp_path / "run.err"
    frames = "".join(f'  File "/deep/pytest/frame{i}.py", line {i} in call\n' for i in range(400))
    log.write_text("step 1\nlast words\nFatal Python error: Segmentation fault\n\n" + frames)
    tail = read_tail(str(log), limit=4000)
    assert len(tail.encode()) <= 4000
    assert "last words" in tail and "Fatal Python error: Segmentation fault" in tail
    # Without a report the tail is the plain end of the log.
    log.write_text("x" * 10_000 + "the end\n")
    assert read_tail(str(log), limit=100).endswith("the end\n")
    assert len(read_tail(str(log), limit=100)) == 100
