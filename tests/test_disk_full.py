"""A full disk, for real: a small tmpfs the test mounts (as root; skipped otherwise). Nothing
stored is lost or changed, every error is one clear line, and once space is freed the run ends
with every value written and no stale error."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from coralx import Repository
from coralx.cli.main import cli
from coralx.errors import EXIT_ENVIRONMENT
from coralx.experiments import ExperimentTracker


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        # Lazily: the store's index connection or a journal may still be open in this process.
        subprocess.run(["umount", "-l", str(mnt)], check=True)


@contextlib.contextmanager
def disk_filled(folder: Path) -> Iterator[None]:
    """Every byte of the file system taken, until the block ends."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        block = b"\0" * (1 << 20)
        while block:
            try:
                f.write(block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                block = block[: len(block) // 2]
    try:
        yield
    finally:
        filler.unlink()


def test_a_run_survives_a_full_disk_and_reports_what_happened(small_disk: Path) -> None:
    repo = Repository.init(small_disk / "project")
    tracker = ExperimentTracker(repo)
    exp = tracker.start("full", params={"lr": 0.1})
    for i in range(100):
        tracker.log("loss", float(i), step=i)
    tracker.flush()
    with disk_filled(small_disk):
        for i in range(100, 300):
            tracker.log("loss", float(i), step=i)
        time.sleep(1.2)  # the background flusher tries, and fails, while the disk is full
        assert tracker._run is not None and tracker._run.failure is not None
        assert tracker._run.failure.errno == errno.ENOSPC  # type: ignore[attr-defined]
    done = tracker.end()  # space is back: everything is written; nothing to report
    assert [m.value for m in done.get_metric_history("loss")] == [float(i) for i in range(300)]
    got = ExperimentTracker(Repository.open(repo.root)).get(exp.experiment_id)
    assert got.status == "completed" and got.metrics_summary["loss"]["count"] == 300
    assert Repository.open(repo.root).fsck().ok


def _safetensors(path: Path, n: int) -> Path:
    data = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    entry = {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}
    header = json.dumps({"w": entry}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + data.tobytes())
    return path


def test_coralx_add_on_a_full_disk_is_one_line_and_changes_nothing(
    small_disk: Path, tmp_path: Path
) -> None:
    repo = Repository.init(small_disk / "project")
    repo.stage_weights({"old": np.arange(1000, dtype=np.float32)})
    first = repo.commit("before").commit_hash
    weights = _safetensors(tmp_path / "model.safetensors", 1_500_000)  # 6 MB, random
    runner = CliRunner()
    with disk_filled(small_disk):
        result = runner.invoke(cli, ["-C", str(repo.root), "add", str(weights)])
        assert result.exit_code == EXIT_ENVIRONMENT, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        assert "disk is full" in lines[0] and str(small_disk) in lines[0], debug_output(
            repo, weights
        )
        assert "Traceback" not in result.output
        debug = runner.invoke(cli, ["--debug", "-C", str(repo.root), "add", str(weights)])
        assert "Traceback" in debug.output and debug.exit_code == EXIT_ENVIRONMENT
    fresh = Repository.open(repo.root)
    assert fresh.fsck().ok
    assert np.array_equal(fresh.get_all_weights(first)["old"], np.arange(1000, dtype=np.float32))
    assert runner.invoke(cli, ["-C", str(repo.root), "add", str(weights)]).exit_code == 0


def debug_output(repo: Repository, weights: Path) -> str:
    return CliRunner().invoke(cli, ["--debug", "-C", str(repo.root), "add", str(weights)]).output


def test_an_output_folder_that_refuses_is_one_line(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "project")
    repo.stage_weights({"w": np.ones(8, dtype=np.float32)})
    repo.commit("one")
    runner = CliRunner()
    for target in ("/proc/x.safetensors", "/proc/self/x.safetensors"):
        result = runner.invoke(cli, ["-C", str(repo.root), "checkout", "HEAD", "-o", target])
        assert result.exit_code == EXIT_ENVIRONMENT, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        (line,) = result.output.strip().splitlines()
        assert line.startswith("error: /proc/") and "[E" in line, line


def test_a_read_only_file_system_is_one_line(small_disk: Path, tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "project")
    repo.stage_weights({"w": np.ones(8, dtype=np.float32)})
    repo.commit("one")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    result = CliRunner().invoke(
        cli, ["-C", str(repo.root), "export", "HEAD", "-o", str(small_disk / "w.safetensors")]
    )
    assert result.exit_code == EXIT_ENVIRONMENT, result.output
    assert "read-only" in result.output and str(small_disk) in result.output
