"""The timer the weight benchmarks share: wall time and CPU time of a block."""

from __future__ import annotations

import time


class Clock:
    """Wall time and CPU time (all threads of this process) of a block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
