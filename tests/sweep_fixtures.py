"""Experiments the sweep tests run. They live at module level in an importable module, so the
subprocess and Ray executors can import them by name in a fresh interpreter."""

from __future__ import annotations

import ctypes
import os
import random
import sys
from typing import Any

import coralx
from coralx.sweep import Config, Run


@coralx.experiment(name="grid", metric="loss", mode="min")
def grid_exp(config: Config, run: Run) -> dict[str, Any]:
    """A 2x3 sweep where one configuration segfaults and one raises."""
    crash = config.get("crash")
    if crash == "segv":
        print("about to crash", file=sys.stderr, flush=True)
        ctypes.string_at(0)
    if crash == "raise":
        raise ValueError(f"bad value in {config.name}")
    if crash == "exit":
        os._exit(3)
    for step in range(3):
        run.log("loss", config.lr * config.width / (step + 1), step=step)
    run["shape/width"] = config.width
    return {"score": config.lr * config.width}


@grid_exp.configs
def _grid_configs() -> Any:
    return coralx.sweep(
        [{"name": "lr1", "lr": 0.1, "width": 8}, {"name": "lr2", "lr": 0.2, "width": 8}],
        [
            {"name": "w8"},
            {"name": "w16", "width": 16, "crash": os.environ.get("SWEEP_TEST_CRASH_A", "")},
            {"name": "w32", "width": 32, "crash": os.environ.get("SWEEP_TEST_CRASH_B", "")},
        ],
    )


@coralx.experiment(name="seeded")
def seeded(config: Config) -> dict[str, Any]:
    """Returns draws from every seeded generator."""
    import numpy as np

    return {"random": random.random(), "numpy": float(np.random.rand()), "seed": config.seed}


@seeded.configs
def _seeded_configs() -> Any:
    return coralx.repeat([{"name": "s", "seed": 7}], 3)


@coralx.experiment(name="plain")
def plain(config: Config) -> dict[str, Any]:
    """Deterministic: the same in every executor."""
    return {"double": config.x * 2, "pid_differs": os.getpid() != config.get("parent_pid")}


@plain.configs
def _plain_configs() -> Any:
    return coralx.grid({"x": [1, 2, 3]})


@coralx.experiment(name="empty")
def empty(config: Config) -> None:
    """Does nothing: the benchmark measures what running it costs."""
    return None
