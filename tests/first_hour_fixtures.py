"""Experiments for tests/test_first_hour.py, importable by name (the subprocess executor
imports the function it runs)."""

from __future__ import annotations

import os
from typing import Any

import coralx
from coralx import Config, Run


@coralx.experiment(name="digits-sweep", metric="val_acc", mode="max")
def digits(config: Config, run: Run) -> dict[str, Any]:
    """What the README's sweep does with its seed: ``default_rng(run.seed)``."""
    import numpy as np

    rng = np.random.default_rng(run.seed)
    if os.environ.get("FIRST_HOUR_FAIL"):
        raise RuntimeError(f"{run.name} diverged")
    value = float(rng.random())
    run.log("val_acc", value, step=0)
    return {"val_acc": value, "seed": run.seed, "hidden": config.hidden}


@digits.configs
def _digits_configs() -> Any:
    return coralx.grid({"hidden": [16, 64], "lr": [0.001, 0.01]})


@digits.report
def _digits_report(results: coralx.ResultSet) -> str:
    # The documented pattern, before it learned to check for None: raises when all failed.
    best = results.best("val_acc", "max")
    return "supports" if best.config.hidden == 64 else "refutes"  # type: ignore[union-attr]


repeated = digits.derive("digits-repeated")


@repeated.configs
def _repeated_configs() -> Any:
    return coralx.repeat(coralx.grid({"hidden": [16, 64], "lr": [0.001, 0.01]}), 3)
