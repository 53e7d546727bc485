"""Re-encoding replaced chunks as deltas behind the commit, on one background thread.

When a commit replaces a chunk, the new version is written whole and is durable when the
commit returns; the replaced version is still stored whole too, so the store is complete and
consistent. Storing that replaced version as a delta towards the new one (the store's
backward chains) only makes it smaller: it is an atomic rename of a new encoding of the same
id. That work (decode both, subtract, compress, write) costs more than the commit itself, so
it runs here, behind the commit, on a single thread (one core; the other is left to the
caller, which is usually training the next step).

A crash or kill at any moment loses only the re-encodings not yet done: those chunks stay
whole, valid and verified on read, a little larger. ``wait()`` blocks until the queue is
empty; a process waits for it at exit, and ``du``, ``gc`` and ``fsck`` wait first.

>>> compactor = Compactor(chunk_store, lock=lambda: gc_lock(shared=True))
>>> compactor.submit(jobs)      # after the chunks the jobs point to are durable
>>> compactor.wait()
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401 - its exit hook must be registered first
import contextlib
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from ..errors import CoralxError
from .base import ChunkStore
from .weights import DeltaJob, rewrite_as_delta

__all__ = ["CompactionStats", "Compactor"]

MAX_QUEUED = 2
"""Job lists (one per staging) waiting at most; a staging that would exceed it waits, so
the work behind never grows without bound when commits come faster than it."""

IDLE_SECONDS = 60.0
"""The background thread ends after this long without work (a new one starts on demand)."""


@dataclass
class CompactionStats:
    """What the background thread has done so far in this process."""

    jobs: int = 0
    saved_bytes: int = 0
    busy_seconds: float = 0.0  # wall time spent working
    cpu_seconds: float = 0.0  # CPU time of the thread
    errors: list[str] = field(default_factory=list)  # the last few failures (chunks kept whole)


class Compactor:
    """One background thread re-encoding replaced chunks of the store at ``root``.

    It works through its own handle on the caller's :class:`~coralx.store.base.ChunkStore`
    (:meth:`~coralx.store.base.ChunkStore.another_handle`), so its batches never mix with
    the caller's, and runs each job list under ``lock`` (the repository's shared gc lock: gc
    never deletes a chunk while it is being re-encoded).
    """

    def __init__(self, store: ChunkStore, lock: Callable[[], AbstractContextManager[Any]]) -> None:
        self.store = store.another_handle()
        self.stats = CompactionStats()
        self._lock = lock
        self._queue: deque[list[DeltaJob]] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        _live.add(self)

    def submit(self, jobs: list[DeltaJob]) -> None:
        """Queue re-encodings; every ``job.new`` must be durable already."""
        if not jobs:
            return
        self._check_fork()
        with self._cond:
            while len(self._queue) >= MAX_QUEUED:
                self._cond.wait()
            self._queue.append(list(jobs))
            self._ensure_thread()
            self._cond.notify_all()

    def pending(self) -> int:
        """Job lists queued or in progress."""
        with self._cond:
            return len(self._queue) + (1 if self._busy else 0)

    def wait(self) -> None:
        """Block until every submitted re-encoding is done."""
        self._check_fork()
        with self._cond:
            while self._queue or self._busy:
                self._ensure_thread()
                self._cond.wait(1.0)

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="coralx-compaction", daemon=True)
            self._thread.start()

    def _check_fork(self) -> None:
        # A forked child inherits the queue but not the thread: the parent does that work.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._queue.clear()
            self._busy = False
            self._thread = None
            self._cond = threading.Condition()

    def _run(self) -> None:
        # One thread that outlives a job list: its scratch buffers and malloc arena are
        # reused from one commit to the next (fresh memory is slow, and new arenas grow the
        # RSS). It ends after IDLE_SECONDS without work, freeing them.
        while True:
            with self._cond:
                deadline = time.monotonic() + IDLE_SECONDS
                while not self._queue:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self._thread = None
                        return
                    self._cond.wait(left)
                jobs = self._queue.popleft()
                self._busy = True
                self._cond.notify_all()
            try:
                self._work(jobs)
            except Exception as exc:  # never leave the queue without its thread
                self._error(f"re-encoding {len(jobs)} chunks: {exc!r}")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _work(self, jobs: list[DeltaJob]) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        saved = 0
        try:
            with self._lock(), self.store.batch():
                for job in jobs:
                    try:
                        saved += rewrite_as_delta(self.store, job)
                    except CoralxError as exc:  # a damaged chunk stays as it is; fsck names it
                        self._error(f"chunk {job.old}: {exc}")
        except (CoralxError, OSError) as exc:  # nothing of this list was swapped in
            self._error(f"re-encoding {len(jobs)} chunks: {exc}")
            saved = 0
        self.stats.jobs += len(jobs)
        self.stats.saved_bytes += saved
        self.stats.busy_seconds += time.perf_counter() - wall
        self.stats.cpu_seconds += time.thread_time() - cpu

    def _error(self, text: str) -> None:
        self.stats.errors = [*self.stats.errors[-9:], text]


_live: weakref.WeakSet[Compactor] = weakref.WeakSet()


def _finish_at_exit() -> None:
    for compactor in list(_live):
        with contextlib.suppress(Exception):
            compactor.wait()


# Finish before thread pools stop taking work at exit (the batch writes use one): threading's
# exit hooks run before atexit's, last registered first, so this runs before
# concurrent.futures' own hook (imported above). Plain atexit where that hook is missing.
_register = getattr(threading, "_register_atexit", atexit.register)
_register(_finish_at_exit)
