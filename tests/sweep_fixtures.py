"""Experiments the sweep tests run. They live at module level in an importable module, so the
subprocess and Ray executors can import them by name in a fresh interpreter."""

from __future__ import annotations

import ctypes
import os
import random
import sys
from typing import Any

import coralx
from coralx.sweeps import Config, Run


@coralx.experiment(name="grid", metric="loss", mode="min")
def grid_exp(config: Config, run: Run) -> dict[str, Any]:
    """A 2x3 sweep where one configuration segfaults and one raises (which ones: by name, in
    the environment, so the configurations' values, and hashes, stay the same)."""
    crash = config.get("crash") or {
        os.environ.get("SWEEP_TEST_SEGV"): "segv",
        os.environ.get("SWEEP_TEST_RAISE"): "raise",
        os.environ.get("SWEEP_TEST_EXIT"): "exit",
    }.get(config.name)
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
            {"name": "w16", "width": 16},
            {"name": "w32", "width": 32},
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


@coralx.experiment(
    name="early",
    callbacks=[coralx.EarlyStopping("val_loss", patience=2, min_delta=0.01, mode="min")],
)
def early(config: Config, run: Run) -> dict[str, Any]:
    """val_loss improves until step 3, then stalls: patience 2 stops it at step 5."""
    curve = [1.0, 0.8, 0.6, 0.5, 0.505, 0.499, 0.4, 0.3]
    steps = 0
    for step, value in enumerate(curve):
        run.log("val_loss", value, step=step)
        steps += 1
        if run.should_stop:
            break
    return {"steps": steps, "stopped": run["early_stopping"]}


@coralx.experiment(name="hooks")
def hooked(config: Config, run: Run) -> dict[str, Any]:
    """Named hooks, nested data, the setup context and testing mode."""
    data = run.apply_hook("process_data", default=[1, 2, 3], data=[1, 2, 3])
    run["results/total"] = sum(data)
    run["results/n"] = len(data)
    return {
        "total": run["results/total"],
        "results": run["results"],
        "setup_path": run.setup.get("path"),
        "epochs": config.epochs,
        "testing": run.testing,
        "seen_last": run.setup.get("last"),
        "context_update": {"last": config.name},
    }


@hooked.hook("process_data")
def _double(run: Run, data: list[int]) -> list[int]:
    return [2 * x for x in data]


@hooked.setup(order=2)
def _setup_b() -> dict[str, Any]:
    return {"path": "/data/b", "seed": 3}


@hooked.setup(order=1)
def _setup_a() -> dict[str, Any]:
    return {"path": "/data/a", "other": 1}


@hooked.testing
def _shrink(config: Config) -> None:
    config.epochs = 1


@hooked.configs
def _hooked_configs() -> Any:
    return [{"name": "one", "epochs": 10}, {"name": "two", "epochs": 20}]


@coralx.experiment(
    name="tracked",
    metric="loss",
    callbacks=[coralx.Checkpoint(every=2, metric="loss", mode="min", keep_best=2)],
)
def tracked(config: Config, run: Run) -> dict[str, Any]:
    """Everything a run records: metrics, nested data, files, artifacts, weight commits."""
    import pathlib

    import numpy as np

    if config.get("interrupt"):
        raise KeyboardInterrupt
    losses = [0.9, 0.5, 0.7, 0.3, 0.4, 0.35]
    for step, loss in enumerate(losses):
        run.log("loss", loss, step=step)
        run.checkpoint({"w": np.full(4, float(step), dtype=np.float32)}, step=step)
    run["eval/squad/f1"] = 88.5
    (run.out / "notes.txt").write_text(f"notes of {run.name}")
    run.log_artifact("raw.bin", b"\x00\x01")
    run.log_artifact("summary.json", {"k": 1})
    run.log_artifact("text.txt", "hello")
    run.log_artifact("file.txt", pathlib.Path(__file__))
    return {"loss": losses[-1], "checkpoints": run["checkpoints"]}


@tracked.configs
def _tracked_configs() -> Any:
    return [{"name": "a", "interrupt": os.environ.get("SWEEP_TEST_INTERRUPT") == "1"}]


@coralx.experiment(name="numpy-values")
def numpy_values(config: Config, run: Run) -> dict[str, Any]:
    """Returns numpy scalars (float subclasses) and sets one in the setup context."""
    import numpy as np

    run.update_context({"seen": np.float64(config.x)})
    return {"value": np.float64(config.x) * 2, "from_config": config.x}


@numpy_values.configs
def _numpy_values_configs() -> Any:
    import numpy as np

    return coralx.grid({"x": list(np.linspace(0.5, 1.0, 2))})


@coralx.experiment(name="setup-types")
def setup_types(config: Config, run: Run) -> dict[str, Any]:
    """Returns the type of the setup context's value ``v``."""
    return {"type": type(run.setup["v"]).__name__}
