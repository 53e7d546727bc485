"""Callbacks (early stopping, checkpoints), hooks, setup context, testing mode, the script CLI."""

from __future__ import annotations

import pytest

from coralx.errors import InvalidConfig, InvalidValue
from coralx.sweeps import Checkpoint, EarlyStopping
from coralx.sweeps._cli import parse_overrides
from coralx.sweeps.verdict import Verdict, to_verdict

from . import sweep_fixtures as fx


class _FakeRun:
    def __init__(self) -> None:
        self.should_stop = False
        self.data: dict = {}

    def __setitem__(self, key: str, value: object) -> None:
        self.data[key] = value


@pytest.mark.parametrize(
    ("values", "mode", "min_delta", "stop_at"),
    [
        ([5, 4, 4.5, 4.2, 3], "min", 0.0, 3),  # no new best at 2 and 3: patience 2 stops at 3
        ([5, 4, 3.95, 3.9, 3.85], "min", 0.1, 3),  # improvements smaller than min_delta
        ([1, 2, 3, 4, 5], "min", 0.0, 2),
        ([1, 2, 3, 4, 5], "max", 0.0, None),
    ],
)
def test_early_stopping(values: list, mode: str, min_delta: float, stop_at: int | None) -> None:
    cb = EarlyStopping("m", patience=2, min_delta=min_delta, mode=mode).fresh()
    run = _FakeRun()
    stopped = None
    for step, v in enumerate(values):
        cb.on_log(run, "m", float(v), step)  # type: ignore[arg-type]
        cb.on_log(run, "other", 0.0, step)  # type: ignore[arg-type]
        if run.should_stop and stopped is None:
            stopped = step
    assert stopped == stop_at
    if stop_at is not None:
        assert run.data["early_stopping"]["stopped_step"] == stop_at


def test_early_stopping_relative_and_bad_settings() -> None:
    cb = EarlyStopping("m", patience=1, min_delta=0.01, relative=True)
    run = _FakeRun()
    cb.on_log(run, "m", 100.0, 0)  # type: ignore[arg-type]
    cb.on_log(run, "m", 99.5, 1)  # 0.5 % better: less than 1 % -> no improvement
    assert run.should_stop
    with pytest.raises(ValueError):
        EarlyStopping("m", patience=0)
    with pytest.raises(ValueError):
        EarlyStopping("m", mode="best")
    with pytest.raises(ValueError):
        Checkpoint(every=0)


@pytest.mark.parametrize("executor", ["inline", "subprocess"])
def test_early_stopping_in_a_run(executor: str) -> None:
    out = fx.early.run_sweep(executor=executor, track=False)
    r = out.results[0]
    assert r["steps"] == 6  # steps 0..5: best 0.5 at 3, no 0.01 gain at 4 and 5
    assert r["stopped"]["stopped_step"] == 5
    assert r["stopped"]["best"] == 0.5


def test_hooks_setup_context_testing_and_context_updates() -> None:
    out = fx.hooked.run_sweep(executor="inline", track=False)
    one, two = out.results
    assert one["total"] == 12 and one["results"] == {"total": 12, "n": 3}
    assert one["setup_path"] == "/data/b"  # setup functions merged by order: b last
    assert one["epochs"] == 10 and not one["testing"]
    assert "context_update" not in one.result
    assert one["seen_last"] is None and two["seen_last"] == "one"  # context updates flow on
    quick = fx.hooked.run_sweep(executor="fork", track=False, testing=True)
    assert [r["epochs"] for r in quick.results] == [1, 1]
    assert all(r["testing"] for r in quick.results)


def test_overrides_reach_every_config() -> None:
    out = fx.hooked.run_sweep(executor="inline", track=False, overrides={"opt.lr": 1e-3})
    assert [r.config.opt.lr for r in out.results] == [0.001, 0.001]
    assert [r["epochs"] for r in out.results] == [10, 20]  # the configs' own, untouched
    # epochs differs between the two configurations: --set would merge them into one run.
    with pytest.raises(InvalidConfig, match="--set-axis epochs"):
        fx.hooked.run_sweep(executor="inline", track=False, overrides={"epochs": 3})


def test_parse_overrides() -> None:
    assert parse_overrides(["lr=0.01", "model.width=64", "name=abc", "flag=true", "xs=[1,2]"]) == {
        "lr": 0.01,
        "model.width": 64,
        "name": "abc",
        "flag": True,
        "xs": [1, 2],
    }
    with pytest.raises(InvalidValue, match="KEY=VALUE"):
        parse_overrides(["novalue"])


def test_verdicts() -> None:
    assert to_verdict("Supports") is Verdict.SUPPORTS
    assert to_verdict(False) is Verdict.REFUTES
    assert to_verdict(None) is None
    assert to_verdict(Verdict.INCONCLUSIVE) is Verdict.INCONCLUSIVE
    with pytest.raises(InvalidValue, match="supports"):
        to_verdict("maybe")


def test_script_command_line(tmp_path) -> None:
    import json
    import subprocess
    import sys

    script = tmp_path / "s.py"
    script.write_text(
        "import coralx\n"
        "@coralx.experiment(name='s')\n"
        "def s(config):\n"
        "    print('hello from', config.name)\n"
        "    return {'y': config.x * 10}\n"
        "@s.configs\n"
        "def c():\n"
        "    return coralx.grid({'x': [1, 2]})\n"
        "if __name__ == '__main__':\n"
        "    s.run(track=False)\n"
    )
    out = subprocess.run(
        [sys.executable, str(script), "--set-axis", "x=[5,6]", "--executor", "fork", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout)
    assert [r["result"]["y"] for r in data["results"]] == [50, 60]
    assert [r["name"] for r in data["results"]] == ["x5", "x6"]
    swept = subprocess.run(
        [sys.executable, str(script), "--set", "x=5"], capture_output=True, text=True
    )
    assert swept.returncode == 2 and "--set-axis x=" in swept.stderr, swept.stderr
    streamed = subprocess.run(
        [sys.executable, str(script), "-s"], capture_output=True, text=True, check=True
    )
    assert "[x1] hello from x1" in streamed.stdout  # each run's output, named, as it comes
    bad = subprocess.run(
        [sys.executable, str(script), "--executor", "nope"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown executor 'nope'" in bad.stderr
