"""Reading and writing experiment records, and keeping the index in step with them.

One process writes a record: the run's own. Others only ever change a record to mark a dead
run FAILED (:meth:`RecordStore.mark_failed`), under a lock and after reading the record again.
Records are rewritten whole and atomically; the index is updated right after, and
:meth:`RecordStore.sync` repairs it if a crash came in between.

Each record file ends with a ``"digest"`` field, the SHA-256 of the file's text without that
field (see :func:`seal` and :func:`unseal`): a record changed on disk by anything but coralx
(a flipped bit, a truncated copy, an edit by hand) is reported as damaged, naming the file,
instead of being read as something it never was. Records written before digests existed have
no such field and are read as before.

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

from ..errors import ExperimentNotFound, InvalidName, RecordDamaged
from ..identity import pid_alive
from .index import INDEX_FILE, Index, file_stamp
from .query import resolve_prefix

if TYPE_CHECKING:
    from .models import ExperimentRecord

__all__ = [
    "LEASE_SECONDS",
    "RecordStore",
    "liveness",
    "seal",
    "unseal",
]

_DIGEST_KEY = ',\n "digest": "sha256:'


def load_for_index(path: Path) -> tuple[dict[str, Any], str] | str | None:
    """(record, text) of one record file, the reason it cannot be read, or None if it is gone:
    what ``Index.rebuild`` reads each file with (in worker processes, hence a function)."""
    try:
        return RecordStore.load_checked(path)
    except FileNotFoundError:
        return None
    except RecordDamaged as exc:
        return f"{path}: {exc.reason}"


def seal(text: str) -> str:
    """A record's JSON text (as ``ExperimentRecord.to_json`` writes it, ending in ``\n}``)
    with a last field holding the SHA-256 of that text.

    >>> unseal(seal('{\n "a": 1\n}'))
    '{\n "a": 1\n}'
    """
    import hashlib

    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return f'{text[:-2]}{_DIGEST_KEY}{digest}"\n}}'


def unseal(text: str) -> str:
    """The record text without its digest field, checked against it. A text without a digest
    (written before digests existed) is returned as it is; ``ValueError`` if the digest does
    not match."""
    import hashlib

    at = text.rfind(_DIGEST_KEY)
    if at < 0:
        return text
    tail = text[at + len(_DIGEST_KEY) :]
    digest = tail[:64]
    if tail[64:].rstrip() != '"\n}':
        raise ValueError("its digest field is not the last thing in the file")
    body = text[:at] + "\n}"
    got = hashlib.sha256(body.encode("utf-8")).hexdigest()
    if got != digest:
        raise ValueError(
            f"does not match its digest (sha256 {digest[:16]}..., content hashes to "
            f"{got[:16]}...): it was changed outside coralx"
        )
    return body


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
INDEX_IDLE = 2.0  # seconds without rows after which the index thread ends (a new write restarts it)
HELD_MAX = 512  # held rows (of ended runs) that are written at once, however young
SYNC_EVERY = 2.0  # seconds between checks for records the index misses (crash repairs)
_stores: weakref.WeakSet[RecordStore] = weakref.WeakSet()


def _drain_all() -> None:
    for store in list(_stores):
        try:
            store.drain()
        except Exception:  # at exit: `sync` re-indexes from the records next time
            pass


atexit.register(_drain_all)

# SQLite connections a forked child inherited: kept referenced so they are never closed there
# (closing one in the child could checkpoint or remove a WAL the parent still uses).
_inherited: list[Any] = []


def _forget_after_fork() -> None:
    """In a forked child: the parent's queued and held index rows are the parent's to write,
    and its SQLite connection must not be used across the fork (sqlite.org, "How To Corrupt
    An SQLite Database File", 2.6). Each store drops them, with its locks and index thread;
    a store used in the child opens its own connection."""
    for store in list(_stores):
        store._pending = {}
        store._held = {}
        store._held_since = 0.0
        store._pending_lock = threading.Condition()
        store._drain_lock = threading.Lock()
        store._indexer = None
        store._waiting = False
        store._stopping = False
        index = store.__dict__.pop("index", None)
        if index is not None:
            _inherited.append(index)


os.register_at_fork(after_in_child=_forget_after_fork)

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
        self._waiting = False  # the index thread waits for rows (not gathering a batch)
        self._stopping = False
        # Rows of runs that ended (see write(hold=True)): never written by the index thread,
        # only by a call into this store (the next run's start, a query, close, exit).
        self._held: dict[str, tuple[dict[str, Any], str, str]] = {}
        self._held_since = 0.0
        _stores.add(self)

    @cached_property
    def index(self) -> Index:
        self.folder.mkdir(exist_ok=True)
        return Index(self.store_path / INDEX_FILE, on_rebuild=self._refill_index)

    def _refill_index(self) -> None:
        # The index was found damaged in use and replaced by an empty one: fill it from the
        # records (the truth) before the query that found the damage is answered.
        self._synced_at = time.monotonic()
        if self.folder.is_dir():
            self.index.sync(self.folder, self.load, force=True)

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
            return RecordStore.load_checked(path)
        except (OSError, RecordDamaged):
            return None

    @staticmethod
    def load_checked(path: Path) -> tuple[dict[str, Any], str]:
        """(record, text without its digest) of one record file; ``FileNotFoundError`` if
        it is missing, :class:`RecordDamaged` (naming the file) if it cannot be read or does
        not match its digest."""
        eid = path.name.split(".")[0]
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise RecordDamaged(str(path), f"cannot be read ({exc.strerror})", eid) from None
        try:
            text = unseal(raw.decode("utf-8"))
            data = json.loads(text)
        except (UnicodeDecodeError, ValueError) as exc:
            raise RecordDamaged(str(path), _reason(exc, len(raw)), eid) from None
        if not isinstance(data, dict) or data.get("experiment_id") != eid:
            raise RecordDamaged(str(path), "is not the record of this run", eid)
        return data, text

    def read_dict(self, experiment_id: str) -> dict[str, Any]:
        try:
            return self.load_checked(self.record_path(experiment_id))[0]
        except FileNotFoundError:
            raise ExperimentNotFound(experiment_id) from None

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

    def write(self, record: ExperimentRecord, hold: bool = False) -> None:
        """Write ``record`` atomically (its ``revision`` goes up by one) and index it.

        The index row follows from the index thread within INDEX_DELAY. With ``hold=True``
        (the last write of a run) no thread writes it: it waits, with the rows of other
        runs that ended, for the next call into this store that is due to write them
        (:meth:`drain_due`, a query, :meth:`close`, the process's exit). Many short runs
        then share one index transaction, and once ``end()`` returns no thread of coralx
        writes into the store. A row held by a process that is killed is written by the
        next process that syncs the index: the record file is the truth.
        """
        from .. import _fs
        from .sync import syncer

        record.revision += 1
        text = record.to_json()
        path = self._record_file(record.experiment_id)
        st = _fs.atomic_write(path, seal(text), fsync=False)
        syncer.add(path)
        stamp = file_stamp(st)  # of the file written: the one at `path` until the next write
        if hold:
            eid = record.experiment_id
            with self._pending_lock:
                self._pending.pop(eid, None)  # its older row: the thread must not write it now
                if not self._held:
                    self._held_since = time.monotonic()
                self._held[eid] = (record.index_view(), text, stamp)
            with self._drain_lock:
                pass  # a batch the thread is writing (it may hold this run's older row) ends
            return
        with self._pending_lock:
            self._pending[record.experiment_id] = (record.index_view(), text, stamp)
            if self._indexer is None or not self._indexer.is_alive():
                self._stopping = False
                self._indexer = threading.Thread(
                    target=self._index_loop, name="coralx-index", daemon=True
                )
                self._indexer.start()
            if self._waiting:  # else it is gathering a batch, or writing one: let it be
                self._pending_lock.notify()

    def _index_loop(self) -> None:
        cond = self._pending_lock
        delay = INDEX_DELAY
        while True:
            with cond:
                self._waiting = True  # for rows: the next write wakes the thread
                try:
                    found = cond.wait_for(lambda: self._pending or self._stopping, INDEX_IDLE)
                finally:
                    self._waiting = False
                if not found:
                    if self._indexer is threading.current_thread():
                        self._indexer = None  # idle: end; the next write starts a new thread
                    return
                if self._stopping:
                    return
                # Let a batch gather (one transaction for many rows), unless asked to stop.
                cond.wait_for(lambda: self._stopping, delay)
                if self._stopping:
                    return
            try:
                self.drain(held=False)
                delay = INDEX_DELAY
            except Exception:
                # A full disk, a damaged index being rebuilt: the rows are queued again and
                # retried, less often while the trouble lasts (the records are on disk).
                delay = min(max(delay * 2, 0.2), 5.0)

    def close(self) -> None:
        """Write the queued index rows, stop the index thread and close the index: once this
        returns no thread of this store writes into the store (it reopens if used again)."""
        with self._pending_lock:
            self._stopping = True
            thread, self._indexer = self._indexer, None
            self._pending_lock.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self.drain()
        index = self.__dict__.pop("index", None)
        if index is not None:
            index.close()

    def drain(self, held: bool = True) -> None:
        """Write the index rows still queued by this process (``held=False``: only those the
        index thread writes). If the index cannot be written (a full disk), the rows stay
        queued and the error is raised."""
        with self._drain_lock:
            with self._pending_lock:
                batch, self._pending = self._pending, {}
                kept: dict[str, tuple[dict[str, Any], str, str]] = {}
                if held and self._held:
                    kept, self._held = self._held, {}
            kept = {k: v for k, v in self._still_current(kept).items() if k not in batch}
            if not batch and not kept:
                return
            try:
                self.index.upsert_many([*batch.values(), *kept.values()])
            except BaseException:
                with self._pending_lock:  # a newer row queued meanwhile wins
                    for eid, item in batch.items():
                        self._pending.setdefault(eid, item)
                    if kept and not self._held:
                        self._held_since = time.monotonic()
                    for eid, item in kept.items():
                        self._held.setdefault(eid, item)
                raise

    def drain_due(self) -> None:
        """Write the held rows (see :meth:`write`) once the oldest has waited INDEX_DELAY,
        or many have gathered: called by the tracker as the next run starts."""
        if self._held and (
            len(self._held) >= HELD_MAX or time.monotonic() - self._held_since >= INDEX_DELAY
        ):
            self.drain()

    def _still_current(
        self, rows: dict[str, tuple[dict[str, Any], str, str]]
    ) -> dict[str, tuple[dict[str, Any], str, str]]:
        # A held row is written only while its record file is still the one it describes:
        # the store may have been deleted (and made again) since the run ended, or the
        # record rewritten by another process, whose own row (or the next sync) is right.
        current = {}
        for eid, item in rows.items():
            try:
                st = os.stat(self._record_file(eid))
            except OSError:
                continue
            if file_stamp(st) == item[2]:
                current[eid] = item
        return current

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

    def sync(self, force: bool = False) -> dict[str, Any]:
        """Index what the index misses; ``unreadable_files`` names each record that could not
        be read (damaged), which keeps the row it had, if any."""
        self._synced_at = time.monotonic()
        if not self.folder.is_dir():
            return {"indexed": 0, "removed": 0, "unreadable": 0, "unreadable_files": []}
        bad: list[str] = []

        def load(path: Path) -> tuple[dict[str, Any], str] | None:
            return self._load_noting(path, bad)

        result: dict[str, Any] = dict(self.index.sync(self.folder, load, force=force))
        result["unreadable_files"] = bad
        return result

    def _load_noting(self, path: Path, bad: list[str]) -> tuple[dict[str, Any], str] | None:
        try:
            return self.load_checked(path)
        except FileNotFoundError:
            return None
        except RecordDamaged as exc:
            bad.append(f"{path}: {exc.reason}")
            return None

    def reindex(self, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Rebuild the index from the records; ``progress(done, total)`` is called as batches
        of records are indexed. ``unreadable_files`` names every record that could not be
        read; its last indexed copy is kept aside in the result's ``recoverable`` (ids whose
        copy ``coralx fsck --repair`` can restore)."""
        self.drain()
        self._synced_at = time.monotonic()
        if not self.folder.is_dir():
            return {"indexed": 0, "removed": 0, "unreadable": 0, "records": 0,
                    "unreadable_files": [], "recoverable": []}  # fmt: skip
        result: dict[str, Any] = dict(self.index.rebuild(self.folder, load_for_index, progress))
        result["records"] = self.index.count()
        return result

    def repair(self, experiment_id: str) -> bool:
        """Rewrite a damaged record from its copy in the index, its metric summaries rebuilt
        from the journal. Returns False if the index holds no copy of it."""
        from .models import ExperimentRecord

        copy = self.index.record(experiment_id)
        if copy is None:
            return False
        record = ExperimentRecord.from_dict(copy)
        record.metrics_summary = self.summary_from_journal(experiment_id) or record.metrics_summary
        self.write(record)
        self.drain()
        return True

    def reap(self) -> list[str]:
        """Mark every run indexed as running whose process is gone FAILED; their ids."""
        dead = []
        for eid, host, pid, pid_start, lease in self.index.running():
            reason = liveness(host, pid, pid_start, lease)
            try:
                if reason is not None and self.mark_failed(eid, f"run died: {reason}", check=True):
                    dead.append(eid)
            except RecordDamaged:
                continue  # reported by reading it and by fsck; a query must still answer
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
        """Each metric's summary computed again from the journal (damaged frames skipped)."""
        from .journal import read_journal, summarize
        from .models import MetricSummary

        cols = read_journal(self.journal_path(experiment_id))
        out = {}
        for nid, name in cols.names.items():
            mask = cols.ids == nid
            if mask.any():
                out[name] = MetricSummary(**summarize(cols.values[mask], cols.steps[mask]))
        return out


def _reason(exc: BaseException, size: int) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"is not UTF-8 text (byte {exc.start})"
    if isinstance(exc, json.JSONDecodeError):
        return (
            f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}; {size} bytes)"
        )
    return str(exc)
