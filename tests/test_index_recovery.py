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
