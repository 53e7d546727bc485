"""Sweep scripts without a `__main__` guard stop with a clear error before any configuration
runs; a sweep in which a configuration failed exits non-zero."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from coralx import Repository
from coralx.errors import EXIT_SWEEP_FAILED

UNGUARDED = """
import coralx

@coralx.experiment(name="unguarded", executor="subprocess")
def train(config):
    open(config.marker, "a").write(config.name + "\\n")   # proof that a configuration ran
    return {"x": config.i}

@train.configs
def _configs():
    return [{"name": f"c{i}", "i": i, "marker": MARKER} for i in range(3)]

MARKER = __import__("os").environ["MARKER"]
train.run(ARGS)      # at module level: no `if __name__ == "__main__":`
"""

FAILING = """
import coralx

@coralx.experiment(name="failing")
def train(config):
    if config.i == 1:
        raise ValueError("configuration 1 fails")
    return {"x": config.i}

@train.configs
def _configs():
    return [{"name": f"c{i}", "i": i} for i in range(3)]

if __name__ == "__main__":
    train.run()
"""


@pytest.mark.parametrize("args", ["", "[]"])
def test_a_script_without_a_main_guard_stops_before_any_configuration_runs(
    tmp_path: Path, args: str
) -> None:
    repo = Repository.init(tmp_path / "p")
    script = tmp_path / "train.py"
    script.write_text(UNGUARDED.replace("ARGS", args))
    marker = tmp_path / "ran.txt"
    proc = subprocess.run(
        [sys.executable, str(script), "-C", str(repo.root), "--workers", "2", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "MARKER": str(marker)},
        cwd=repo.root,  # run([]) ignores -C: the store is found from the cwd
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert 'if __name__ == "__main__":' in proc.stderr
    assert str(script) in proc.stderr
    assert "SystemExit" not in proc.stderr
    assert not marker.exists(), "a configuration ran"
    records = list((repo.path / "experiments").glob("*.json"))
    assert records == [], "runs were recorded for configurations that never ran"


def test_a_sweep_with_a_failed_configuration_exits_non_zero(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "p")
    script = tmp_path / "failing.py"
    script.write_text(FAILING)
    cmd = [sys.executable, str(script), "-C", str(repo.root), "--executor", "inline"]
    proc = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_SWEEP_FAILED, proc.stderr
    assert json.loads(proc.stdout)["counts"]["failed"] == 1  # the results are printed all the same
    from click.testing import CliRunner

    from coralx.cli.main import cli

    result = CliRunner().invoke(
        cli, ["-C", str(repo.root), "sweep", "run", str(script), "--executor", "inline", "-q"]
    )
    assert result.exit_code == EXIT_SWEEP_FAILED, result.output
