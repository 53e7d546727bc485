"""Reading and writing experiment records, and keeping the index in step with them.

One process writes a record: the run's own. Others only ever change a record to mark a dead
run FAILED (:meth:`RecordStore.mark_failed`), under a lock and after reading the record again.
Records are rewritten whole and atomically; the index is updated right after, and
:meth:`RecordStore.sync` repairs it if a crash came in between.

Only the standard library is imported here at module level, so the CLI's query commands stay
fast; pydantic is imported when a record is written or validated.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import threading
import time
import weakref
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ExperimentNotFound, InvalidName
from ..identity import pid_alive
from .index import INDEX_FILE, Index, file_stamp
from .query import resolve_prefix

if TYPE_CHECKING:
    from .models import ExperimentRecord

__all__ = [
    "LEASE_SECONDS",
    "RecordStore",
    "liveness",
]

EXPERIMENTS_DIR = "experiments"
# A running process renews its lease every LEASE_RENEW seconds; a run whose lease is older
# than LEASE_SECONDS is taken for dead, wherever it ran (the only test across machines).
LEASE_SECONDS = 120.0
LEASE_RENEW = 15.0


def liveness(
    host: str | None, pid: int | None, pid_start: int | None, lease_until: float | None
) -> str | None:
    """Why a run recorded as running is dead, or None if it may still be alive."""
    from ..identity import hostname

    if host == hostname() and pid is not None and not pid_alive(pid, pid_start):
        return f"its process (pid {pid} on {host}) is gone: it was killed or crashed"
    if lease_until is not None and time.time() > lease_until:
        ago = time.time() - lease_until + LEASE_SECONDS
        return (
            f"its process (pid {pid} on {host}) stopped renewing its lease {ago:.0f}s ago: "
            "it was killed, crashed, or its machine went away"
        )
    return None


INDEX_DELAY = 0.05  # seconds an index row may wait, so that rows are written in batches
SYNC_EVERY = 2.0  # seconds between checks for records the index misses (crash repairs)
_stores: weakref.WeakSet[RecordStore] = weakref.WeakSet()


def _drain_all() -> None:
    for store in list(_stores):
        try:
            store.drain()
        except Exception:  # at exit: `sync` re-indexes from the records next time
            pass


atexit.register(_drain_all)

_HEX = frozenset("0123456789abcdef")


def _checked(experiment_id: str) -> str:
    """A full experiment id, checked before it becomes part of a path."""
    if (
        not isinstance(experiment_id, str)
        or len(experiment_id) != 20
        or not _HEX.issuperset(experiment_id)
    ):
        raise InvalidName("experiment id", experiment_id, "expected 20 lowercase hex digits")
    return experiment_id


class RecordStore:
    """The records under ``<store>/experiments`` and the index over them."""

    def __init__(self, store_path: Path) -> None:
        self.store_path = Path(store_path)
        self.folder = self.store_path / EXPERIMENTS_DIR
        self._folder_name = str(self.folder)
        self._synced_at = -math.inf
        # Index rows written behind: the record file is the truth and is written at once;
        # its index row follows within INDEX_DELAY, many rows in one transaction. Readers in
        # this process drain the queue first, so they never see the index behind.
        self._pending: dict[str, tuple[dict[str, Any], str, str]] = {}
        self._pending_lock = threading.Condition()
        self._drain_lock = threading.Lock()
        self._indexer: threading.Thread | None = None
        _stores.add(self)

    @cached_property
    def index(self) -> Index:
        self.folder.mkdir(exist_ok=True)
        return Index(self.store_path / INDEX_FILE)

    # -- paths --------------------------------------------------------------------------------

    def record_path(self, experiment_id: str) -> Path:
        return self.folder / f"{_checked(experiment_id)}.json"

    def _record_file(self, experiment_id: str) -> str:
        # record_path as a string: the write path runs at every save of every run.
        return f"{self._folder_name}{os.sep}{_checked(experiment_id)}.json"

    def journal_path(self, experiment_id: str) -> Path:
        return self.folder / f"{_checked(experiment_id)}.metrics"

    def exists(self, experiment_id: str) -> bool:
        return self.record_path(experiment_id).is_file()

    # -- reading ------------------------------------------------------------------------------

    @staticmethod
    def load(path: Path) -> tuple[dict[str, Any], str] | None:
        """(record, text) of one record file, or None if it is missing or unreadable."""
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text)
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or "experiment_id" not in data:
            return None
        return data, text

    def read_dict(self, experiment_id: str) -> dict[str, Any]:
        loaded = self.load(self.record_path(experiment_id))
        if loaded is None:
            raise ExperimentNotFound(experiment_id)
        return loaded[0]

    def read(self, experiment_id: str) -> ExperimentRecord:
        from .models import ExperimentRecord

        return ExperimentRecord.from_dict(self.read_dict(experiment_id))

    def resolve(self, id_or_prefix: str) -> str:
        """The full id of the run ``id_or_prefix`` names (an id or an unambiguous prefix)."""
        self.ensure_synced()

        def lookup(prefix: str, limit: int) -> list[str]:
            matches = self.index.ids_with_prefix(prefix, limit)
            if not matches and len(prefix) == 20 and self.exists(prefix):
                matches = [prefix]  # written by a process that died before indexing it
            return matches

        return resolve_prefix(id_or_prefix, lookup)

    # -- writing ------------------------------------------------------------------------------

    def write(self, record: ExperimentRecord) -> None:
        """Write ``record`` atomically (its ``revision`` goes up by one) and index it."""
        from .. import _fs
        from .sync import syncer

        record.revision += 1
        text = record.to_json()
        path = self._record_file(record.experiment_id)
        st = _fs.atomic_write(path, text, fsync=False)
        syncer.add(path)
        stamp = file_stamp(st)  # of the file written: the one at `path` until the next write
        with self._pending_lock:
            self._pending[record.experiment_id] = (record.index_view(), text, stamp)
            if self._indexer is None or not self._indexer.is_alive():
                self._indexer = threading.Thread(
                    target=self._index_loop, name="coralx-index", daemon=True
                )
                self._indexer.start()
            self._pending_lock.notify()

    def _index_loop(self) -> None:
        while True:
            with self._pending_lock:
                self._pending_lock.wait_for(lambda: bool(self._pending))
            time.sleep(INDEX_DELAY)  # let a batch gather: one transaction for many rows
            self.drain()

    def drain(self) -> None:
        """Write the index rows still queued by this process."""
        with self._drain_lock:
            with self._pending_lock:
                batch, self._pending = self._pending, {}
            if batch:
                self.index.upsert_many(batch.values())

    def delete(self, experiment_id: str) -> None:
        """Remove a record, its journal and its index row."""
        from .. import _fs

        self.drain()

        for path in (self.record_path(experiment_id), self.journal_path(experiment_id)):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        _fs.fsync_dir(self.folder)
        self.index.remove(experiment_id)

    # -- crashes ------------------------------------------------------------------------------

    def ensure_synced(self) -> None:
        """Before a query: this process's queued index rows are written, and (at most every
        SYNC_EVERY seconds) records the index misses or holds stale are indexed."""
        self.drain()
        if time.monotonic() - self._synced_at > SYNC_EVERY:
            self.sync()

    def sync(self, force: bool = False) -> dict[str, int]:
        self._synced_at = time.monotonic()
        if not self.folder.is_dir():
            return {"indexed": 0, "removed": 0, "unreadable": 0}
        return self.index.sync(self.folder, self.load, force=force)

    def reindex(self, progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
        """Rebuild the index from the records. ``progress(done, total)`` is called as batches
        of records are indexed."""
        self.drain()
        self._synced_at = time.monotonic()
        if not self.folder.is_dir():
            return {"indexed": 0, "removed": 0, "unreadable": 0, "records": 0}
        result = self.index.rebuild(self.folder, self.load, progress)
        result["records"] = self.index.count()
        return result

    def reap(self) -> list[str]:
        """Mark every run indexed as running whose process is gone FAILED; their ids."""
        dead = []
        for eid, host, pid, pid_start, lease in self.index.running():
            reason = liveness(host, pid, pid_start, lease)
            if reason is not None and self.mark_failed(eid, f"run died: {reason}", check=True):
                dead.append(eid)
        if dead:
            self.drain()
        return dead

    def mark_failed(
        self,
        experiment_id: str,
        error_message: str,
        error_detail: str | None = None,
        *,
        check: bool = False,
    ) -> bool:
        """Mark a pending or running run FAILED, its metric summary rebuilt from the journal.

        With ``check=True`` the run is marked only if the record itself (not just the index)
        still says it is running and its process is gone. Returns whether it was marked.
        """
        from .. import _fs
        from .models import utcnow

        with _fs.FileLock(self.folder / ".mark.lock", timeout=60):
            record = self.read(experiment_id)
            if record.status not in ("running", "pending"):
                return False
            if check and (
                record.status != "running"
                or liveness(record.host, record.pid, record.pid_start, record.lease_until) is None
            ):
                return False
            record.metrics_summary = self.summary_from_journal(experiment_id)
            record.status = "failed"
            record.ended_at = utcnow()
            record.error_message = error_message
            if error_detail is not None:
                record.error_detail = error_detail
            record.lease_until = None
            self.write(record)
        return True

    def summary_from_journal(self, experiment_id: str) -> dict[str, Any]:
        from .journal import read_journal, summarize
        from .models import MetricSummary

        cols = read_journal(self.journal_path(experiment_id))
        out = {}
        for nid, name in cols.names.items():
            mask = cols.ids == nid
            if mask.any():
                out[name] = MetricSummary(**summarize(cols.values[mask], cols.steps[mask]))
        return out
