"""Background fsync, batched.

On this kind of disk one ``fsync`` right after a small write costs a few milliseconds, while
fsyncing a few hundred files written a moment ago costs about 0.2 ms each: the file system
commits them in one journal transaction. So records and journals are written at once (atomic
rename: a killed process never tears them, the page cache belongs to the kernel) and made
durable against a power cut by this thread, at most ``DELAY`` seconds later. ``wait()`` blocks
until everything handed over so far is on disk; it runs at exit.
"""

from __future__ import annotations

import atexit
import os
import threading
import time

__all__ = ["DELAY", "Syncer", "syncer"]

DELAY = 0.2


class Syncer:
    """Collects paths to fsync and fsyncs them (and their folders) in batches."""

    def __init__(self, delay: float = DELAY) -> None:
        self.delay = delay
        self._cond = threading.Condition()
        self._io = threading.Lock()
        self._pending: dict[str, None] = {}
        self._queued = 0
        self._done = 0
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def add(self, path: str | os.PathLike[str], folder: bool = True) -> int:
        """Schedule ``path`` (and its folder) for fsync; returns a ticket for :meth:`wait`."""
        name = os.fspath(path)
        with self._cond:
            self._ensure_thread()
            self._pending[name] = None
            if folder:
                self._pending[os.path.dirname(name) or "."] = None
            # The thread waits only when everything queued is done; otherwise it is
            # gathering or syncing a batch and looks again after it: no wake-up needed.
            idle = self._done >= self._queued
            self._queued += 1
            if idle:
                self._cond.notify_all()
            return self._queued

    def wait(self, ticket: int | None = None, timeout: float | None = None) -> bool:
        """Block until the write with ``ticket`` (default: everything so far) is durable.

        The caller fsyncs what is pending itself rather than wait out the thread's gathering
        delay: a short-lived process (a sweep's child) would otherwise spend ``DELAY`` on
        every exit. ``timeout`` bounds only the wait for a batch already being synced."""
        with self._cond:
            target = self._queued if ticket is None else ticket
            if self._done >= target:
                return True
        if not self._io.acquire(timeout=-1 if timeout is None else timeout):
            return False
        self._io.release()
        with self._cond:
            if self._done >= target:
                return True
        self._sync_batch()  # everything queued up to now, here
        return True

    def reset_after_fork(self) -> None:
        """In a forked child: fresh locks and no thread. A lock the parent's sync thread held
        at the fork (it holds ``_io`` through every batch of fsyncs) would stay held in the
        child forever, and its first ``wait()`` (a fork worker's, before it exits) hang."""
        self._cond = threading.Condition()
        self._io = threading.Lock()
        self._thread = None
        self._pid = os.getpid()

    def _ensure_thread(self) -> None:
        if os.getpid() != self._pid:  # a forked child starts its own thread
            self._pid = os.getpid()
            self._thread = None
        if self._thread is None or not self._thread.is_alive():
            _load_fsync_all()
            self._thread = threading.Thread(target=self._run, name="coralx-sync", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._done < self._queued)
            # Let a batch gather: its fsyncs share one file-system commit.
            time.sleep(self.delay)
            self._sync_batch()

    def _sync_batch(self) -> None:
        # One batch at a time, so "done" never runs ahead of a batch still being synced.
        with self._io:
            with self._cond:
                batch, self._pending = self._pending, {}
                target = self._queued
            fsync_all(list(batch))
            with self._cond:
                self._done = max(self._done, target)
                self._cond.notify_all()


def _load_fsync_all() -> None:
    """Import and load what :func:`fsync_all` calls, on the thread that starts the syncer's
    thread, never on that thread itself: a module being imported (or a library being loaded)
    by a background thread holds its lock, and a process forked at that moment (a sweep's
    fork worker) would wait forever for that lock the first time it imported the module."""
    from .. import _fs  # noqa: F401 - imported here, for fsync_all on the syncer's thread
    from ..store import kernels

    kernels.available()


def fsync_all(paths: list[str]) -> None:
    """fsync each file or folder in ``paths``, skipping those gone since they were queued.

    With one syncfs where they share a local file system that honours it
    (:func:`coralx._fs.sync_together`: a batch of a few hundred records took an fsync
    each, every one a flush of the disk's cache). Else in one C call (``cx_fsync_paths``)
    where the compiled library is in use: a Python loop gives the GIL up and takes it back
    around every open, fsync and close, and each time it is taken back the training loop
    on the main thread waits (measured: 2,000 short runs 0.2-0.3 s slower on two cores).
    Else one path after another here."""
    from .. import _fs
    from ..store import kernels

    if len(paths) > 2 and _fs.sync_together(paths):
        return
    if not kernels.fsync_paths(paths):
        for path in paths:
            _fsync_path(path)


def _fsync_path(path: str) -> None:
    from .. import _fs

    try:
        _fs.fsync_path(path)  # a file or a folder alike
    except OSError:
        pass  # deleted or renamed since (its replacement was queued on its own), or failed


syncer = Syncer()
atexit.register(syncer.wait)
os.register_at_fork(after_in_child=syncer.reset_after_fork)
