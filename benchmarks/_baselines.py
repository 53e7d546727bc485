"""What the weight benchmarks share: a timer, and the plain safetensors save they compare with."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


class Clock:
    """Wall time and CPU time (all threads of this process) of a block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def save_baseline(weights: dict[str, Any], path: Path) -> Clock:
    """safetensors' own ``save_file`` and an fsync: what a commit is measured against."""
    import numpy as np
    from safetensors.numpy import save_file

    # safetensors' numpy API has no bfloat16: the same bytes as uint16
    plain = {n: w.view(np.uint16) if str(w.dtype) == "bfloat16" else w for n, w in weights.items()}
    with Clock() as clock:
        save_file(plain, str(path))
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    return clock
