"""Lifecycle: once ``end()`` or ``close()`` returns, no thread of coralx writes into the store,
so deleting it at once never races a background writer."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coralx import Repository
from coralx.experiments import ExperimentTracker


@pytest.fixture
def fast_tmp(tmp_path: Path) -> Iterator[Path]:
    """A folder on tmpfs when there is one: 200 stores created and fsync'd cost seconds on
    a disk, and the race under test is between threads, not with the disk."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="coralx-lifecycle-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_start_log_end_rmtree_200_times(fast_tmp: Path) -> None:
    for i in range(200):
        folder = fast_tmp / f"p{i % 3}"
        repo = Repository(folder, init=True)
        tracker = ExperimentTracker(repo, capture_code=False)
        exp = tracker.start(f"run-{i}", params={"i": i}, tags=["loop"])
        for step in range(20):
            tracker.log("loss", 1.0 / (step + 1), step=step)
        tracker.end()
        assert exp.status == "completed"
        # "Directory not empty" here was the index thread writing its row behind end().
        shutil.rmtree(repo.path)
        assert not repo.path.exists()
        tracker.close()


def _indexed_status(repo: Repository, experiment_id: str) -> list[tuple[str]]:
    # Read the index file with a connection of its own, as another process would.
    import sqlite3

    if not (repo.path / "index.sqlite").exists():
        return []  # not made yet (connect would make an empty file)
    conn = sqlite3.connect(f"file:{repo.path / 'index.sqlite'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT status FROM experiments WHERE id = ?", (experiment_id,))
        return rows.fetchall()
    finally:
        conn.close()


def test_an_ended_run_is_found_completed_everywhere_and_its_row_follows(
    repo: Repository,
) -> None:
    tracker = ExperimentTracker(repo, capture_code=False)
    exp = tracker.start("indexed")
    tracker.end()
    # No thread writes the row behind end(): it is held, and the index still says running
    # (the thread wrote the row of the start a moment ago) or nothing.
    time.sleep(0.2)
    assert _indexed_status(repo, exp.experiment_id) in ([], [("running",)])
    # Another process (a store of its own) finds the run completed: the record is the truth.
    other = ExperimentTracker(Repository(repo.root), capture_code=False)
    assert [r.experiment_id for r in other.list(status="completed")] == [exp.experiment_id]
    other.close()
    # The next run's start writes the held row.
    tracker.start("next")
    assert _indexed_status(repo, exp.experiment_id) == [("completed",)]
    second = tracker.end()
    tracker.flush()  # so does a flush (a sweep worker's, after every run)
    assert _indexed_status(repo, second.experiment_id) == [("completed",)]
    third = tracker.start("third")
    tracker.end()
    assert _indexed_status(repo, third.experiment_id) in ([], [("running",)])
    assert len(tracker.list(status="completed")) == 3  # and so does a query
    assert _indexed_status(repo, third.experiment_id) == [("completed",)]
    tracker.close()


def test_held_rows_are_dropped_when_the_store_went_away(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "gone", init=True)
    tracker = ExperimentTracker(repo, capture_code=False)
    tracker.start("short")
    tracker.end()
    shutil.rmtree(repo.path)
    # The exit handler drains every store: nothing of the deleted store is made again.
    tracker._store.drain()
    assert not repo.path.exists()


def test_a_forked_child_leaves_its_parents_index_rows_and_connection(
    repo: Repository,
) -> None:
    from coralx.records import store as records

    tracker = ExperimentTracker(repo, capture_code=False)
    exp = tracker.start("parent's")
    tracker.end()  # its index row is held, for the parent's next call to write
    store = tracker._store
    assert store._held
    inherited = store.index
    pid = os.fork()
    if pid == 0:  # the child: the rows and the SQLite connection are the parent's
        code = 1
        try:
            assert store._held == {} and store._pending == {}
            assert "index" not in store.__dict__
            assert inherited in records._inherited  # kept, never closed here
            records._drain_all()  # what the child's exit handler runs: writes nothing
            assert "index" not in store.__dict__
            # The child still reads the store (its own connection), the run included.
            found = [r.experiment_id for r in tracker.list(status="completed")]
            assert store.index is not inherited
            code = 0 if found == [exp.experiment_id] else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store._held  # the parent's are untouched, and it writes them itself
    assert [r.experiment_id for r in tracker.list(status="completed")] == [exp.experiment_id]
    assert _indexed_status(repo, exp.experiment_id) == [("completed",)]
    tracker.close()


def test_close_writes_the_queue_and_stops_the_index_thread(repo: Repository) -> None:
    tracker = ExperimentTracker(repo, capture_code=False)
    pending = tracker.resume(tracker.start("parent").experiment_id, start=False)
    tracker.end()
    tracker.close()
    store = tracker._store
    assert store._indexer is None and "index" not in store.__dict__
    assert store._pending == {} and store._held == {}
    again = ExperimentTracker(repo, capture_code=False)
    assert again.get_or_raise(pending.experiment_id).status == "pending"
    again.close()


def test_close_fails_an_active_run_and_the_tracker_is_still_usable(repo: Repository) -> None:
    tracker = ExperimentTracker(repo, capture_code=False)
    exp = tracker.start("left open")
    tracker.log("loss", 1.0)
    tracker.close()
    assert tracker.current is None
    stored = tracker.get_or_raise(exp.experiment_id)
    assert stored.status == "failed" and "closed before tracker.end()" in str(stored.error_message)
    assert stored.metrics_summary["loss"]["count"] == 1
    tracker.start("after close")
    tracker.end()
    assert len(tracker.list()) == 2
    tracker.close()


def test_repository_is_a_context_manager_closing_its_trackers(tmp_path: Path) -> None:
    import numpy as np

    with Repository(tmp_path / "ctx", init=True) as repo:
        tracker = ExperimentTracker(repo, capture_code=False)
        exp = tracker.start("inside")
        repo.stage_weights({"w": np.arange(10, dtype=np.float32)})
        repo.commit("weights")
        assert "git" in repo.__dict__
    # Leaving the block closed the tracker (failing its open run) and the git database.
    assert tracker.current is None and "git" not in repo.__dict__
    store = tracker._store
    assert store._indexer is None
    shutil.rmtree(repo.path)
    assert not repo.path.exists()
    reopened = Repository(tmp_path / "ctx2", init=True)
    with ExperimentTracker(reopened, capture_code=False) as tracker2:
        tracker2.start("ok")
        tracker2.end()
    assert ExperimentTracker(reopened).get_or_raise(tracker2.list()[0].experiment_id)
    assert exp.experiment_id  # the first run was recorded before its store was removed


@pytest.mark.parametrize("n", [3])
def test_idle_index_thread_ends_by_itself(repo: Repository, n: int) -> None:
    from coralx.records import store as store_module

    tracker = ExperimentTracker(repo, capture_code=False)
    for i in range(n):
        tracker.start(f"r{i}")
        tracker.end()
    thread = tracker._store._indexer
    assert thread is not None
    thread.join(timeout=store_module.INDEX_IDLE + 5)
    assert not thread.is_alive()
    tracker.start("again")  # a new write starts a new thread
    tracker.end()
    assert tracker._store._indexer is not None
    restarted = tracker._store._indexer
    tracker.close()
    assert tracker._store._indexer is None and not restarted.is_alive()
