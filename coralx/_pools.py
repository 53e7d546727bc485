"""Thread pools kept for the life of a process: made on first use, never shut down, and
forgotten in a forked child, which inherits a pool object but none of its threads (work
submitted to it there would never run), so the child makes its own on first use."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

__all__ = ["KeptPool"]


class KeptPool:
    """A process-wide :class:`ThreadPoolExecutor` of ``workers()`` threads, made on first use.

    >>> io = KeptPool(lambda: 16, "coralx-io")
    >>> io.get().submit(os.fsync, fd)
    """

    def __init__(self, workers: Callable[[], int], prefix: str) -> None:
        self._workers = workers
        self._prefix = prefix
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        _KEPT.append(self)

    def get(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers(), thread_name_prefix=self._prefix)
            return self._pool

    def _forget(self) -> None:
        self._pool = None
        self._lock = threading.Lock()  # the parent's may have been held at the fork


_KEPT: list[KeptPool] = []


def _forget_all() -> None:
    for pool in _KEPT:
        pool._forget()


os.register_at_fork(after_in_child=_forget_all)
