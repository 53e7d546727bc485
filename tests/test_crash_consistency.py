"""kill -9 at random points of every kind of write (journal append, record rewrite, index
write, commit, re-encode), then check that the store holds everything that was durable, that
nothing is damaged, and that every reader still answers."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from coralx import Repository
from coralx.experiments import ExperimentTracker
from coralx.records.journal import read_journal
from coralx.records.store import RecordStore

# Each mode loops over one kind of write, so that a kill at a random moment lands inside it.
# The child prints a line for each write that returned: what the store must hold after a kill.
WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from coralx import Repository
    from coralx.experiments import ExperimentTracker

    root, mode = sys.argv[1], sys.argv[2]
    repo = Repository.open(root)
    tracker = ExperimentTracker(repo)
    rng = np.random.default_rng(int(sys.argv[3]))
    base = rng.standard_normal(200_000).astype("f4")
    print("ready", flush=True)
    i = 0
    while True:
        if mode == "journal":
            if i == 0:
                tracker.start("journal")
            for j in range(500):
                tracker.log("v", float(i * 500 + j), step=i * 500 + j)
            tracker.flush()
        elif mode == "record":
            if i == 0:
                tracker.start("record")
            tracker.log_params({"i": i, "blob": "x" * (i % 50)})
        elif mode == "index":
            tracker.start(f"run-{i}", params={"i": i}, tags=["crash"])
            tracker.log("loss", 1.0 / (i + 1))
            tracker.end()
            tracker.list(tags=["crash"])  # drains this process's index rows
        elif mode in ("commit", "reencode"):
            # "reencode": each commit changes a little of the last, so the chunks it replaces
            # are re-encoded as deltas in the background while the next commit is written.
            step = 1e-3 if mode == "reencode" else 1.0
            weights = base + np.float32(step * i)
            repo.stage_weights({"w": weights, "b": np.full(64, i, dtype="f4")})
            commit = repo.commit(f"commit {i}").commit_hash
            print("commit", commit, i, flush=True)
        print("done", i, flush=True)
        i += 1
    """
)

MODES = ["journal", "record", "index", "commit", "reencode"]


def _kill_at_random(root: Path, mode: str, seed: int) -> list[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), mode, str(seed)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(random.Random(seed).uniform(0.3, 1.5))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == -signal.SIGKILL
    # The kill may land inside a print: a line without its newline was never fully said.
    lines = out.split("\n")
    return lines[:-1]


def _check_store(root: Path, mode: str, lines: list[str], seed: int) -> None:
    repo = Repository.open(root)
    report = repo.fsck()
    assert report.ok, (mode, report.to_dict())
    store = RecordStore(repo.path)
    files = sorted((repo.path / "experiments").glob("*.json"))
    for path in files:
        store.load_checked(path)  # every record reads and matches its digest
    tracker = ExperimentTracker(repo)
    listed = tracker.list()
    assert len(listed) == len(files)  # the index agrees with the records
    done = [int(line.split()[1]) for line in lines if line.startswith("done")]
    newest = max(listed, key=lambda e: e.experiment_id) if listed else None
    if mode == "journal" and newest is not None:
        assert newest.status == "failed"  # the dead run is marked so by the next reader
        cols = read_journal(repo.path / "experiments" / f"{newest.experiment_id}.metrics")
        assert not cols.damage, cols.damage
        n = len(cols.values)
        # What was flushed before the kill is there, in order, with nothing after a hole.
        assert cols.values.tolist() == [float(k) for k in range(n)]
        assert n >= 500 * len(done)
    if mode == "record" and done and newest is not None:
        assert newest.params["i"] >= done[-1]  # every rewrite that returned is there
    if mode == "index":
        names = {e.name for e in tracker.list(tags=["crash"])}
        assert {f"run-{k}" for k in done} <= names
    if mode in ("commit", "reencode"):
        base = np.random.default_rng(seed).standard_normal(200_000).astype("f4")
        step = 1e-3 if mode == "reencode" else 1.0
        for line in lines:
            if line.startswith("commit"):
                _tag, commit, k = line.split()
                got = repo.get_all_weights(commit)  # bit for bit, every chunk verified
                assert np.array_equal(got["w"], base + np.float32(step * int(k)))
                assert np.array_equal(got["b"], np.full(64, int(k), dtype="f4"))


@pytest.mark.parametrize("mode", MODES)
def test_kill_9_at_random_points_loses_nothing_durable(tmp_path: Path, mode: str) -> None:
    root = tmp_path / "project"
    Repository.init(root)
    for round_ in range(2):
        seed = 1000 * MODES.index(mode) + round_
        lines = _kill_at_random(root, mode, seed)
        _check_store(root, mode, lines, seed)
    # After the kills, a fresh writer works as before, and cleans what the dead ones left.
    repo = Repository.open(root)
    repo.stage_weights({"after": np.ones(16, dtype="f4")})
    repo.commit("after the crashes")
    assert not list((repo.path / "chunks").rglob(".tmp-*"))
    assert repo.fsck().ok
    assert os.path.isdir(repo.path)
