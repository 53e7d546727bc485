"""``coralx.trials``: files of ``@setup``/``@trial``/``@verify`` functions, written as the seed
writes them, run as users run them (``python file.py``, ``coralx sweep run file.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from coralx import Repository
from coralx.experiments import ExperimentTracker
from coralx.sweeps.record import list_sweeps
from coralx.trials import VerificationResult

ROOT = Path(__file__).resolve().parents[1]

# The seed's first example, with only the import line changed.
SEED_EXAMPLE = """\
from coralx.trials import setup, trial, verify, VerificationResult
import numpy as np

@setup()
def init():
    # Consistent results across the whole run
    return {"seed": 42, "numpy_seed": 42, "torch_seed": 42}

@trial(1, {"n": [3]})
def t(n: int):
    # SETUP is available as a global
    x = np.random.RandomState(SETUP.get("numpy_seed", 0)).randn(n)
    print("trial t sees", SETUP)
    return {"x_mean": float(x.mean())}

@verify(["t"])
def check(results):
    runs = results.get("t", [])
    if not runs:
        return VerificationResult.INCONCLUSIVE
    ok = all(r.get("success") and ("result" in r) for r in runs)
    return VerificationResult.SUPPORTS if ok else VerificationResult.REFUTES
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def run(
    script: Path, *args: str, env: dict[str, str] | None = None, cli: bool = False
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MLX_")}
    full_env.update(PYTHONPATH=str(ROOT), **(env or {}))
    cmd = [sys.executable, "-m", "coralx", "sweep", "run"] if cli else [sys.executable]
    return subprocess.run(
        [*cmd, str(script), *args],
        cwd=script.parent,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def as_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        out: dict[str, Any] = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}") from None
    return out


def test_seed_example_runs_as_written(tmp_path: Path) -> None:
    script = write(tmp_path, "seed_trials.py", SEED_EXAMPLE)
    proc = run(script)
    assert proc.returncode == 0, proc.stderr
    # a single-combination trial streams its output
    assert "[t(n=3)] trial t sees {'seed': 42, 'numpy_seed': 42, 'torch_seed': 42}" in proc.stdout
    assert "verify check: supports" in proc.stdout

    repo = Repository(tmp_path)
    (record,) = list_sweeps(repo)
    assert record.name == "seed_trials" and record.verdict["verdict"] == "supports"
    (attempt,) = record.runs
    import numpy as np

    expected = float(np.random.RandomState(42).randn(3).mean())
    assert attempt.result == {"result": {"x_mean": expected}}
    run_record = ExperimentTracker(repo).get(attempt.experiment_id)
    assert run_record.status == "completed"
    assert run_record.sweep["sweep_id"] == record.sweep_id
    assert run_record.params == {"trial": "t", "values": {"n": 3}}
    assert run_record.name == "seed_trials/t(n=3)"

    again = run(script, "--json")
    assert again.returncode == 0
    assert as_json(again)["results"] == {"t": [{"success": True, "result": {"x_mean": expected}}]}
    assert len(list_sweeps(repo)[0].runs) == 1  # cached: the combination did not run again


GRID = """\
from coralx.trials import setup, trial, verify, VerificationResult
import os

@setup(order=2)
def later():
    return {"where": "later", "extra": 1}

@setup(order=1)
def first():
    return {"where": "first", "seed": 7}

@trial(1, {"a": [1, 2], "b": ["x", "y"]})
def grid(a: int, b: str):
    print("combination", a, b, "pid", os.getpid())
    if (a, b) == (2, "y"):
        raise ValueError("no good")
    return [a, b, SETUP["where"], os.getpid()]

@verify(["grid"])
def counts(results):
    runs = results["grid"]
    return len(runs) == 4 and sum(r["success"] for r in runs) == 3

@verify()
def sees_everything(results):
    return "supports" if list(results) == ["grid"] and SETUP["extra"] == 1 else "refutes"

@verify(["grid"])
def unsure(results):
    return None
"""


def test_cartesian_product_run_dicts_and_verdicts(tmp_path: Path) -> None:
    script = write(tmp_path, "grid.py", GRID)
    proc = run(script, "--json")
    assert proc.returncode == 1  # one combination failed
    out = as_json(proc)
    runs = out["results"]["grid"]
    assert [r["success"] for r in runs] == [True, True, True, False]
    assert [r["result"][:3] for r in runs[:3]] == [
        [1, "x", "later"],
        [1, "y", "later"],
        [2, "x", "later"],
    ]
    assert len({r["result"][3] for r in runs[:3]}) == 3  # one subprocess per combination
    failed = runs[3]
    assert failed == {"success": False, "return_code": 1, "error": "no good", "type": "ValueError"}
    assert out["verdicts"] == {
        "counts": "supports",
        "sees_everything": "supports",
        "unsure": "inconclusive",
    }
    (record,) = list_sweeps(Repository(tmp_path))
    assert record.verdict["verdict"] == "inconclusive"
    assert record.context["where"] == "later" and record.context["seed"] == 7
    # multi-combination output is not streamed, it is kept in the sweep's logs
    assert "combination" not in proc.stdout


def test_stream_all_and_sweep_run_cli(tmp_path: Path) -> None:
    script = write(tmp_path, "grid.py", GRID)
    proc = run(script, "--stream-all", cli=True)
    assert proc.returncode == 1
    for name in ("grid(a=1, b='x')", "grid(a=2, b='x')"):
        assert f"[{name}] combination" in proc.stdout
    assert "verify counts: supports" in proc.stdout
    proc = run(script, "--new", "--quiet", env={"MLX_STREAM_ALL": "1"})
    assert "[grid(a=1, b='y')] combination 1 y" in proc.stdout
    assert len(list_sweeps(Repository(tmp_path))) == 2


CONTEXT = """\
from coralx.trials import setup, trial

@setup()
def init():
    return {"path": "/tmp/data"}

@trial(1, {"n": [1, 2, 3]})
def gen(n: int):
    return {"saw": SETUP.get("last_n"), "context_update": {"last_n": n}}

@trial(2, {"m": [0]})
def after(m: int):
    return {"saw": SETUP.get("last_n"), "path": SETUP["path"]}
"""


def test_context_update_sequential_is_seen_at_once(tmp_path: Path) -> None:
    script = write(tmp_path, "context.py", CONTEXT)
    out = as_json(run(script, "--json"))
    assert [r["result"]["saw"] for r in out["results"]["gen"]] == [None, 1, 2]
    assert out["results"]["after"] == [{"success": True, "result": {"saw": 3, "path": "/tmp/data"}}]
    # Running again reuses every result and replays their updates: the same context
    (record,) = list_sweeps(Repository(tmp_path))
    assert record.context == {"path": "/tmp/data", "last_n": 3}
    assert as_json(run(script, "--json")) == {**out, "sweep_id": record.sweep_id}


PARALLEL = """\
from coralx.trials import trial
import os, time
from pathlib import Path

HERE = Path(__file__).parent

@trial(1, {"n": [1, 2, 3], "__parallel__": 2})
def together(n: int):
    if n < 3:
        # A barrier: the first two combinations must run at once, or this times out.
        (HERE / f"arrived_{n}").touch()
        deadline = time.monotonic() + 60
        while len(list(HERE.glob("arrived_*"))) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("the other combination never ran alongside")
            time.sleep(0.05)
    return {"saw": SETUP.get("last"), "context_update": {"last": n}}

@trial(2, {"k": [0]})
def next_trial(k: int):
    return {"saw": SETUP.get("last")}
"""


def test_parallel_batch_updates_apply_after_the_batch(tmp_path: Path) -> None:
    script = write(tmp_path, "parallel.py", PARALLEL)
    out = as_json(run(script, "--json"))
    together = out["results"]["together"]
    assert [r["success"] for r in together] == [True, True, True], together
    # The third starts when a worker frees up, after a sibling updated the context: it
    # still does not see the update; the next trial sees the last writer's.
    assert [r["result"]["saw"] for r in together] == [None, None, None]
    assert out["results"]["next_trial"][0]["result"]["saw"] in (1, 2, 3)


def test_mlx_parallel_sets_the_workers(tmp_path: Path) -> None:
    script = write(tmp_path, "parallel.py", PARALLEL.replace(', "__parallel__": 2', ""))
    out = as_json(run(script, "--json", env={"MLX_PARALLEL": "2"}))
    assert [r["success"] for r in out["results"]["together"]] == [True, True, True]


RETRY = """\
from coralx.trials import setup, trial
import random
from pathlib import Path

HERE = Path(__file__).parent

@setup()
def init():
    return {"seed": 123, "pythonhashseed": 0}

@trial(1, {"n": [1, 2]})
def flaky(n: int):
    with open(HERE / "calls.txt", "a") as f:
        f.write(f"{n}\\n")
    if n == 2 and (HERE / "broken").exists():
        raise RuntimeError("broken")
    return {"n": n, "random": random.random(), "hash": hash("coralx")}
"""


def test_caching_lineage_and_seeding(tmp_path: Path) -> None:
    script = write(tmp_path, "retry.py", RETRY)
    (tmp_path / "broken").touch()
    first = as_json(run(script, "--json"))
    assert [r["success"] for r in first["results"]["flaky"]] == [True, False]
    (tmp_path / "broken").unlink()
    second = as_json(run(script, "--json"))
    assert [r["success"] for r in second["results"]["flaky"]] == [True, True]
    # only the failed combination ran again, as a child of the failed run
    assert (tmp_path / "calls.txt").read_text().split() == ["1", "2", "2"]
    (record,) = list_sweeps(Repository(tmp_path))
    failed, retried = [a for a in record.runs if a.config_name == "flaky(n=2)"]
    assert failed.status == "failed" and retried.parent_experiment == failed.experiment_id
    lineage = ExperimentTracker(Repository(tmp_path)).lineage(retried.experiment_id)
    assert {e.experiment_id for e in lineage} == {retried.experiment_id, failed.experiment_id}
    # seeded from SETUP in every child: Python's random and the hash seed
    import random

    results = second["results"]["flaky"]
    assert results[0]["result"]["random"] == random.Random(123).random()
    assert results[0]["result"]["hash"] == results[1]["result"]["hash"]
    fresh = as_json(run(script, "--json", "--rerun"))
    assert [r["result"]["hash"] for r in fresh["results"]["flaky"]] == [
        r["result"]["hash"] for r in results
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('@trial(1, {"setup": [1]})\ndef t(setup):\n    return 1\n', "'setup' is reserved"),
        (
            '@trial(1, {"opt": [object()]})\ndef t(opt):\n    return 1\n',
            "values['opt'][0] is <object object",
        ),
        ('@trial(1, {"x": [float("nan")]})\ndef t(x):\n    return 1\n', "values['x'][0]"),
        ('@trial(1, {"x": 3})\ndef t(x):\n    return 1\n', "give a list of values"),
        ('@trial(1, {"y": [1]})\ndef t(x):\n    return 1\n', "t() takes no parameter 'y'"),
        (
            '@setup()\ndef s():\n    return {"ok": 1, "model": object()}\n'
            '@trial(1, {"x": [1]})\ndef t(x):\n    return 1\n',
            "SETUP['model'] (from @setup function s) is a object",
        ),
        ('@trial(1, {"x": [1], "__parallel__": 0})\ndef t(x):\n    return 1\n', "__parallel__"),
    ],
)
def test_bad_trial_files_are_clear_errors(tmp_path: Path, body: str, message: str) -> None:
    script = write(tmp_path, "bad.py", "from coralx.trials import setup, trial\n" + body)
    proc = run(script)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    repo_runs = tmp_path / ".coralx" / "experiments"
    assert not repo_runs.exists() or not any(repo_runs.rglob("*.json"))


def test_verification_result_parsing() -> None:
    of = VerificationResult.of
    assert of(VerificationResult.REFUTES) is VerificationResult.REFUTES
    assert of("Supports") is VerificationResult.SUPPORTS
    assert of(" CONTINUE ") is VerificationResult.CONTINUE
    assert of("invalid") is VerificationResult.INVALID
    assert of(True) is VerificationResult.SUPPORTS
    assert of(False) is VerificationResult.REFUTES
    assert of(None) is VerificationResult.INCONCLUSIVE
    with pytest.raises(ValueError, match="a verification returned 'maybe'"):
        of("maybe")


def test_bad_option_and_failing_module_run_nothing(tmp_path: Path) -> None:
    script = write(tmp_path, "seed_trials.py", SEED_EXAMPLE)
    proc = run(script, "--bogus")
    assert proc.returncode == 2 and "unrecognized arguments: --bogus" in proc.stderr
    assert "usage:" in run(script, "--help").stdout
    broken = write(tmp_path, "broken.py", SEED_EXAMPLE + "\nraise SystemError('module broke')\n")
    proc = run(broken)
    assert proc.returncode == 1 and "module broke" in proc.stderr
    assert not (tmp_path / ".coralx").exists() or not list_sweeps(Repository(tmp_path))


def test_a_result_json_cannot_hold_fails_that_combination(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "objects.py",
        """\
        from coralx.trials import trial

        @trial(1, {"n": [1, 2]})
        def t(n):
            return {"n": n} if n == 1 else {"model": object()}
        """,
    )
    out = as_json(run(script, "--json"))
    ok, bad = out["results"]["t"]
    assert ok == {"success": True, "result": {"n": 1}}
    assert bad["success"] is False and bad["type"] == "InvalidConfig"
    assert "JSON cannot hold" in bad["error"]
