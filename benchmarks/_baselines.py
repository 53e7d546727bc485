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


def describe_file_system(path: str | Path) -> str:
    """Which file system ``path`` is on, as a benchmark's header names it: its device and
    type, and for ext4 whether it has a journal. Without one (this project's CI machine),
    a new file skips every inode freed in the last minute or more, so creating files right
    after a run removed thousands costs several times what it does on a quiet disk (or on
    any journaled ext4, XFS or Btrfs): run a benchmark twice in a row to see it."""
    real = os.path.realpath(path)
    best: tuple[str, str, str] = ("/", "?", "?")
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                point = left.split()[4]
                fstype, source = right.split()[:2]
                inside = real == point or real.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best[0]):
                    best = (point, fstype, source)
    except OSError:
        return "file system unknown"
    point, fstype, source = best
    text = f"{source} ({fstype}, mounted on {point})"
    if fstype == "ext4":
        name = os.path.basename(source)
        try:
            journaled = any(d.startswith(name + "-") for d in os.listdir("/proc/fs/jbd2"))
        except OSError:
            journaled = False
        text += ", with a journal" if journaled else ", without a journal"
    return text
