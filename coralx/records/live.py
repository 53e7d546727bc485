"""The run a process is recording: its buffer, journal, running summaries and lease, and the
one flusher thread per process that keeps every live run written.

``ExperimentTracker.log`` appends ``(name, value, step)`` tuples to :attr:`LiveRun.buffer`; the
flusher beats every ``TICK`` seconds: it appends a time marker ``(None, time, NO_STEP)`` (values
take the time of the next marker), writes the buffer to the journal when it is
``FLUSH_INTERVAL`` old or holds ``FLUSH_SIZE`` values, folds it into the summaries and renews
the lease by rewriting the record.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from ..identity import process_start_time
from .checks import check_metric_name
from .journal import NO_STEP, JournalWriter, encode_frame, merge_summary, summarize_list
from .store import LEASE_RENEW, LEASE_SECONDS
from .sync import syncer

if TYPE_CHECKING:
    from .models import ExperimentRecord
    from .store import RecordStore

__all__ = [
    "FLUSH_INTERVAL",
    "FLUSH_SIZE",
    "TICK",
    "Flusher",
    "LiveRun",
    "flusher",
    "own_start_time",
]

FLUSH_INTERVAL = 0.5  # seconds: the oldest buffered value is at most about this old
FLUSH_SIZE = 50_000  # values: flush sooner when this many are buffered
TICK = 0.1  # the flusher's period, and the resolution of metric timestamps
SMALL_CHUNK = 2000  # buffers up to this size are flushed without numpy


_start_times: dict[int, int | None] = {}


def own_start_time() -> int | None:
    pid = os.getpid()  # keyed by pid: a forked child has its own
    if pid not in _start_times:
        _start_times[pid] = process_start_time(pid)
    return _start_times[pid]


class LiveRun:
    """The state of the run a tracker is recording: buffer, journal, summaries, lease."""

    def __init__(
        self,
        store: RecordStore,
        record: ExperimentRecord,
        on_save: Callable[[ExperimentRecord], None],
    ) -> None:
        self.store = store
        self.record = record
        self.on_save = on_save  # keeps the user's Experiment object in step with the record
        self.experiment: Any = None
        self.pid = os.getpid()
        # The hot path appends (name, value, step) tuples; the flusher appends
        # (None, time, NO_STEP) markers, which give the values before them their time.
        self.buffer: list[tuple[Any, float, int]] = []
        self.names: set[str] = set()
        self.name_ids: dict[Any, int] = {None: -1}
        self.summary: dict[str, dict[str, Any]] = {
            k: v.model_dump() for k, v in record.metrics_summary.items()
        }
        self.lock = threading.RLock()
        self.journal = JournalWriter(self.store.journal_path(record.experiment_id))
        self.last_flush = time.monotonic()
        self.next_lease = time.monotonic() + LEASE_RENEW
        self.closed = False
        self.dirty_summary = False
        self._appended = False
        # A loss end() must report (values dropped); a failed background write that a later
        # write made good (a disk that filled, then was freed) is kept in `failure` only.
        self.error: BaseException | None = None
        self.failure: BaseException | None = None

    def add_name(self, name: Any) -> None:
        name = check_metric_name(name)
        with self.lock:
            if name not in self.name_ids:
                self.name_ids[name] = len(self.name_ids) - 1
            self.names.add(name)

    def mark_time(self) -> None:
        buf = self.buffer
        if buf and buf[-1][0] is not None:
            buf.append((None, time.time(), NO_STEP))

    def flush(self) -> None:
        """Write what is buffered to the journal and fold it into the summaries.

        On a failed write (a full disk) nothing is lost: the values go back in front of the
        buffer and a later flush writes them in order. A value that cannot be stored (which
        ``log`` refuses, so only one put in the buffer some other way) is dropped alone, and
        noted in :attr:`error`; every other value of its batch is written."""
        with self.lock:
            buf = self.buffer
            n = len(buf)
            self.last_flush = time.monotonic()
            if n == 0:
                return
            chunk = buf[:n]
            del buf[:n]  # the hot path only appends, so this takes exactly `chunk`
            self._appended = False
            try:
                try:
                    self._write_chunk(chunk)
                except (OverflowError, TypeError, ValueError, KeyError):
                    if self._appended:
                        raise
                    chunk = self._drop_invalid(chunk)
                    self._write_chunk(chunk)
            except BaseException:
                if not self._appended:
                    # Nothing was written (the journal cuts a failed write back): put the
                    # values back in front, so a later flush writes them in order.
                    buf[0:0] = chunk
                raise
            self.failure = None  # what an earlier flush could not write is written now

    def _drop_invalid(self, chunk: list[tuple[Any, float, int]]) -> list[tuple[Any, float, int]]:
        kept = [e for e in chunk if _storable(e, self.name_ids)]
        dropped = len(chunk) - len(kept)
        if dropped:
            from ..errors import InvalidValue

            self.error = InvalidValue(
                f"{dropped} value(s) that a journal cannot store (a step outside 64 bits, a "
                "value that is not a float) were dropped; every other value was written"
            )
        return kept

    def _declared(self, names: Any) -> list[tuple[int, str]]:
        # Every frame declares the names it uses, so it can be read without the ones before.
        return sorted((self.name_ids[name], name) for name in names if name is not None)

    def _write_chunk(self, chunk: list[tuple[Any, float, int]]) -> None:
        if len(chunk) <= SMALL_CHUNK:
            self._write_small(chunk)
            return
        import numpy as np

        n = len(chunk)
        # map/itemgetter run in C: about 0.1 us a value each, against seconds for zip(*chunk).
        ids = np.fromiter(
            map(self.name_ids.__getitem__, map(itemgetter(0), chunk)), dtype=np.int64, count=n
        )
        vals = np.fromiter(map(itemgetter(1), chunk), dtype=np.float64, count=n)
        stps = np.fromiter(map(itemgetter(2), chunk), dtype=np.int64, count=n)
        is_mark = ids < 0
        marks = np.flatnonzero(is_mark)
        keep = np.flatnonzero(~is_mark)
        if len(keep) == 0:
            return
        # Each value gets the time of the first marker after it (the flusher adds one every
        # tick), values after the last marker get now: times are at most one tick late.
        nxt = np.searchsorted(marks, keep)
        mark_times = np.append(vals[marks], time.time())
        times = mark_times[nxt]
        ids, vals, stps = ids[keep], vals[keep], stps[keep]
        by_id = {nid: name for name, nid in self.name_ids.items() if name is not None}
        used = [int(nid) for nid in np.flatnonzero(np.bincount(ids))]
        frame = encode_frame(self._declared(by_id[i] for i in used), ids, vals, stps, times)
        self.journal.append(frame)
        self._appended = True
        syncer.add(self.journal.path, folder=False)
        from .journal import summarize

        for nid in used:
            mask = ids == nid
            name = by_id[nid]
            self.summary[name] = merge_summary(
                self.summary.get(name), summarize(vals[mask], stps[mask])
            )
        self.dirty_summary = True

    def _write_small(self, chunk: list[tuple[Any, float, int]]) -> None:
        # The same as the numpy path, in plain Python (comprehensions): for a few hundred
        # values numpy's per-call overhead costs more than the work.
        now = time.time()
        if any(entry[0] is None for entry in chunk):
            times: list[float] = []
            stamp = now
            for entry in reversed(chunk):  # each value takes the time of the next marker
                if entry[0] is None:
                    stamp = entry[1]
                else:
                    times.append(stamp)
            times.reverse()
            chunk = [entry for entry in chunk if entry[0] is not None]
            if not chunk:
                return
        else:
            times = [now] * len(chunk)
        name_ids = self.name_ids
        ids = [name_ids[entry[0]] for entry in chunk]
        vals = [entry[1] for entry in chunk]
        stps = [entry[2] for entry in chunk]
        used = {entry[0] for entry in chunk}
        self.journal.append(encode_frame(self._declared(used), ids, vals, stps, times))
        self._appended = True
        syncer.add(self.journal.path, folder=False)
        for name in used:
            if len(name_ids) == 2:  # one metric (and the marker): no need to pick
                values, steps = vals, stps
            else:
                values = [entry[1] for entry in chunk if entry[0] == name]
                steps = [entry[2] for entry in chunk if entry[0] == name]
            self.summary[name] = merge_summary(
                self.summary.get(name), summarize_list(values, steps)
            )
        self.dirty_summary = True

    def save(self, lease: bool = True, hold: bool = False) -> None:
        """Write the record with the summaries so far (and a fresh lease); ``hold``: its
        index row waits for the store's next call (see ``RecordStore.write``)."""
        from .models import MetricSummary

        with self.lock:
            if self.closed:
                return  # the run ended while the flusher waited for the lock
            rec = self.record
            # The summaries are built here from checked floats and ints: no need to validate.
            rec.metrics_summary = {
                k: MetricSummary.model_construct(**v) for k, v in self.summary.items()
            }
            if lease:
                rec.lease_until = time.time() + LEASE_SECONDS
                self.next_lease = time.monotonic() + LEASE_RENEW
            self.store.write(rec, hold=hold)
            self.dirty_summary = False
            self.on_save(rec)
            if not self.buffer:
                self.failure = None

    def tick(self) -> None:
        """One beat of the flusher: timestamp, flush by age or size, renew the lease."""
        self.mark_time()
        now = time.monotonic()
        if len(self.buffer) >= FLUSH_SIZE or now - self.last_flush >= FLUSH_INTERVAL:
            self.flush()
        if now >= self.next_lease:
            self.save()


class Flusher:
    """One thread per process beating for every live run."""

    def __init__(self) -> None:
        self.runs: weakref.WeakSet[LiveRun] = weakref.WeakSet()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def add(self, run: LiveRun) -> None:
        with self.lock:
            self.runs.add(run)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="coralx-flush", daemon=True)
                self.thread.start()

    def discard(self, run: LiveRun) -> None:
        with self.lock:
            self.runs.discard(run)

    def _loop(self) -> None:
        while True:
            time.sleep(TICK)
            with self.lock:
                runs = list(self.runs)
            for run in runs:
                try:
                    run.tick()
                except Exception as exc:  # retried at the next tick, and by the run's end()
                    run.failure = exc  # cleared by the next write that succeeds

    def reset_after_fork(self) -> None:
        self.lock = threading.Lock()
        self.runs = weakref.WeakSet()
        self.thread = None


flusher = Flusher()


def _storable(entry: tuple[Any, Any, Any], name_ids: dict[Any, int]) -> bool:
    from .checks import STEP_MAX, STEP_MIN

    name, value, step = entry
    if name is None:
        return True
    return (
        name in name_ids
        and value.__class__ is float
        and step.__class__ is int
        and (step == NO_STEP or STEP_MIN <= step <= STEP_MAX)
    )
