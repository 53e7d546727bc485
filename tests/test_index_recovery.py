"""The index is derived data: a damaged index.sqlite is set aside and rebuilt from records."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from coralx import Repository
from coralx.experiments import ExperimentTracker

MAKE_RUNS = """
import sys
from coralx import Repository
from coralx.experiments import ExperimentTracker
tracker = ExperimentTracker(Repository(sys.argv[1], init=True))
for lr in (0.1, 0.01):
    exp = tracker.start(name="bert", params={"lr": lr}, tags=["bert"])
    tracker.log("val_loss", lr, step=1)
    tracker.end()
    print(exp.experiment_id)
"""


def test_damaged_index_is_rebuilt_from_records(tmp_path: Path) -> None:
    made = subprocess.run(
        [sys.executable, "-c", MAKE_RUNS, str(tmp_path)], capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    ids = made.stdout.split()
    store = tmp_path / ".coralx"
    index = store / "index.sqlite"
    assert index.is_file()
    for suffix in ("-wal", "-shm"):
        index.with_name(index.name + suffix).unlink(missing_ok=True)
    index.write_bytes(b"not a database at all" * 10)

    tracker = ExperimentTracker(Repository.open(tmp_path))
    assert sorted(e.experiment_id for e in tracker.list(tags=["bert"])) == sorted(ids)
    assert tracker.find_best(metric="val_loss", mode="min")[0]["experiment_id"] == ids[1]
    assert (store / "index.sqlite.damaged").read_bytes().startswith(b"not a database")


HOLDER = """
import sys, time
from coralx import Repository
from coralx.experiments import ExperimentTracker
tracker = ExperimentTracker(Repository.open(sys.argv[1]))
print(len(tracker.list()), flush=True)      # the index is open in this process from now on
sys.stdin.readline()                         # ... while the other process finds it damaged
print(len(tracker.list(tags=["bert"])), flush=True)
"""


def _damage_pages(index: Path) -> None:
    data = bytearray(index.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    assert len(data) >= 2 * page, "the index has one page: nothing to damage past its header"
    for i in range(page, len(data)):
        data[i] = 0xA5  # every page after the header page: the schema stays readable
    with open(index, "r+b") as f:  # in place, as a disk error would: the inode stays
        f.write(bytes(data))


def test_index_damaged_while_another_process_has_it_open(tmp_path: Path) -> None:
    made = subprocess.run(
        [sys.executable, "-c", MAKE_RUNS, str(tmp_path)], capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    ids = made.stdout.split()
    store = tmp_path / ".coralx"
    import sqlite3

    conn = sqlite3.connect(store / "index.sqlite")  # every page in the main file, none in the WAL
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "2"
        _damage_pages(store / "index.sqlite")
        tracker = ExperimentTracker(Repository.open(tmp_path))
        # Answered from the records, not a "database disk image is malformed" traceback.
        assert sorted(e.experiment_id for e in tracker.list(tags=["bert"])) == sorted(ids)
        assert tracker.find_best(metric="val_loss", mode="min")[0]["experiment_id"] == ids[1]
        assert (store / "index.sqlite.damaged").is_file()
        # The other process follows the rebuilt index at its next use.
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "2"
        assert holder.wait(timeout=60) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate()  # waits, and closes the pipes
