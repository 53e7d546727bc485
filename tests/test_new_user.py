"""examples/new_user.py, the first hour of a new PyTorch user, runs and every check in it holds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_new_user_script(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the new user trains a PyTorch model")
    pytest.importorskip("sklearn", reason="on scikit-learn's digits")
    folder = tmp_path / "project"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "new_user.py"), "--dir", str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAILED:" not in done.stdout
    assert "all checks passed" in done.stdout  # the script exits 1 at the first failed check
    for step in (
        "ok: a run killed with kill -9 is marked FAILED",
        "ok: a failed run names the last weights it committed",
        "again",  # the best run's weights, loaded into a fresh model, score what was logged
        "ok: a sweep with two workers completes",
        "ok: each heatmap cell is its configuration's val_acc",
    ):
        assert step in done.stdout, step
    assert (folder / ".coralx").is_dir()
