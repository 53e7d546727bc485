"""A small sweep for the viewer's browser tests and screenshots: a 3x3 grid over learning rate
and width, each run logging metrics, text and figures, one configuration failing, and a report
with a verdict. Run inline with the real sweep runner and tracker."""

from __future__ import annotations

import math
from typing import Any

import coralx
from coralx import Logger
from coralx.sweeps import Config, Run

STEPS = 120


@coralx.experiment(name="ui-demo", tags=["demo"], metric="val_loss", mode="min")
def ui_demo(config: Config, run: Run) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if config.lr == 0.3 and config.width == 64:
        raise FloatingPointError("loss diverged to NaN at step 17")
    log = Logger(run)
    rate = config.lr * math.log2(config.width) / 4
    val = 1.0
    for step in range(STEPS):
        log.set_global_it(step)
        train = 2.0 * math.exp(-rate * step / 10) + 0.05 * math.sin(step)
        val = 2.0 * math.exp(-rate * step / 12) + 0.1
        log.add_scalar("train_loss", train)
        log.add_scalar("val_loss", val)
        log.add_scalar("accuracy", 1 - val / 2.2)
        if step % 40 == 0:
            log.add_text("samples", f"step {step}: the model says <{'ok' * (1 + step // 40)}>")
            fig, ax = plt.subplots(figsize=(4, 2.5))
            ax.hist([math.sin(i * (step + 1) / 7) for i in range(200)], bins=20)
            ax.set_title(f"activations at step {step}")
            log.add_figure("activations", fig, interactive=step < 80)
            plt.close(fig)
    return {"val_loss": val}


@ui_demo.configs
def _configs() -> Any:
    return coralx.grid({"lr": [0.1, 0.2, 0.3], "width": [16, 32, 64]})


@ui_demo.report
def _report(results: Any) -> str:
    return "supports"


def make_demo_store(root: Any) -> dict[str, Any]:
    """A store at ``root`` holding the demo sweep; its sweep id and run ids by config name."""
    repo = coralx.Repository.init(root)
    result = ui_demo.run_sweep(executor="inline", repo=repo)
    return {"repo": repo, "sweep_id": result.sweep_id, "result": result}
