"""The coralx demo: what coralx is for, end to end, in about half a minute.

A small real training: a one-hidden-layer network (or, at width 0, logistic regression) fitted
with numpy to a two-moons dataset made here with a fixed seed. A 3x2 sweep (model width x
learning rate) runs it with tracking and weight commits; each configuration is an experiment in
a fresh store. Then the CLI finds the best run (`coralx exp list`, `coralx exp best`, `coralx
sweep show`), checks its weights out by commit to a safetensors file, and verifies them bit for
bit against what the run saved itself, and by re-scoring the model.

    make demo                  # or: python examples/demo.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import coralx

# -- the model -------------------------------------------------------------------------------


def make_moons(n: int = 600, noise: float = 0.25, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Two interleaved half circles with noise, split 2:1 into training and validation."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, np.pi, n)
    label = rng.integers(0, 2, n)
    x = np.where(label == 0, np.cos(t), 1 - np.cos(t))
    y = np.where(label == 0, np.sin(t), 0.5 - np.sin(t))
    points = np.stack([x, y], axis=1) + rng.normal(0, noise, (n, 2))
    points = (points - points.mean(0)) / points.std(0)
    cut = 2 * n // 3
    targets = label.astype(np.float64)
    return points[:cut], targets[:cut], points[cut:], targets[cut:]


def init_params(hidden: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if hidden == 0:  # logistic regression
        return {"out.weight": rng.normal(0, 0.1, (2, 1)), "out.bias": np.zeros(1)}
    return {
        "hidden.weight": rng.normal(0, 1 / np.sqrt(2), (2, hidden)),
        "hidden.bias": np.zeros(hidden),
        "out.weight": rng.normal(0, 1 / np.sqrt(hidden), (hidden, 1)),
        "out.bias": np.zeros(1),
    }


def forward(params: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = (
        np.tanh(x @ params["hidden.weight"] + params["hidden.bias"])
        if "hidden.weight" in params
        else x
    )
    logits = (h @ params["out.weight"] + params["out.bias"])[:, 0]
    return 1 / (1 + np.exp(-logits)), h


def loss_and_accuracy(
    params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray
) -> tuple[float, float]:
    p, _ = forward(params, x)
    eps = 1e-12
    loss = -np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))
    return float(loss), float(np.mean((p > 0.5) == (y > 0.5)))


def gradient_step(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, lr: float) -> None:
    p, h = forward(params, x)
    d_logits = ((p - y) / len(y))[:, None]
    grads = {"out.weight": h.T @ d_logits, "out.bias": d_logits.sum(0)}
    if "hidden.weight" in params:
        d_h = (d_logits @ params["out.weight"].T) * (1 - h**2)
        grads["hidden.weight"] = x.T @ d_h
        grads["hidden.bias"] = d_h.sum(0)
    for name, grad in grads.items():
        params[name] -= lr * grad


# -- the sweep -------------------------------------------------------------------------------


@coralx.experiment(
    name="moons",
    tags=["demo", "moons"],
    metric="val_acc",
    mode="max",
    callbacks=[
        coralx.EarlyStopping("val_loss", patience=50, min_delta=1e-4, mode="min"),
        coralx.Checkpoint(every=100),
    ],
)
def train(config: coralx.Config, run: coralx.Run) -> dict[str, Any]:
    """Full-batch gradient descent on two moons; returns the validation accuracy."""
    x, y, x_val, y_val = make_moons(seed=config.data_seed)
    params = init_params(config.hidden, np.random.default_rng(run.seed))
    epoch = 0
    for epoch in range(config.epochs):
        gradient_step(params, x, y, config.lr)
        train_loss, _ = loss_and_accuracy(params, x, y)
        val_loss, val_acc = loss_and_accuracy(params, x_val, y_val)
        run.log_metrics(
            {"train_loss": train_loss, "val_loss": val_loss, "val_acc": val_acc}, step=epoch
        )
        run.checkpoint(params, step=epoch)  # the Checkpoint callback commits every 100 epochs
        if run.should_stop:
            break
    val_loss, val_acc = loss_and_accuracy(params, x_val, y_val)
    commit = run.commit_weights(params, message=f"{run.name}: final, val_acc={val_acc:.3f}")
    np.savez(run.out / "weights.npz", **params)  # the run's own copy, recorded as an artifact
    run["data/train_size"] = len(x)
    run["data/val_size"] = len(x_val)
    return {
        "val_acc": val_acc,
        "val_loss": val_loss,
        "epochs": epoch + 1,
        "weights": commit.commit_hash,
    }


@train.configs
def configs() -> Any:
    base = {"name": "moons", "epochs": 600, "data_seed": 0, "seed": 1}
    widths = [
        {"name": "linear", "hidden": 0},
        {"name": "h8", "hidden": 8},
        {"name": "h32", "hidden": 32},
    ]
    rates = [{"name": "lr0.3", "lr": 0.3}, {"name": "lr1", "lr": 1.0}]
    return coralx.sweep(coralx.sweep([base], widths), rates)  # shape (1, 3, 2)


@train.testing
def quick(config: coralx.Config) -> None:
    config.epochs = 20


@train.report
def report(results: coralx.ResultSet) -> str:
    """Hypothesis: a hidden layer beats logistic regression on two moons."""
    linear = results[{"config.hidden": 0}].best("val_acc", "max")
    deep = results["*_h*"].best("val_acc", "max")
    if linear is None or deep is None:
        return "inconclusive"
    return "supports" if deep["val_acc"] > linear["val_acc"] + 0.02 else "refutes"


# -- the walk-through ------------------------------------------------------------------------


def coralx_cli(*args: str, cwd: Path, capture: bool = False) -> str:
    print(f"\n$ coralx {' '.join(args)}", flush=True)
    out = subprocess.run(
        [sys.executable, "-m", "coralx", *args],
        cwd=cwd,
        check=True,
        text=True,
        capture_output=capture,
    )
    return out.stdout if capture else ""


def verify_checkout(work: Path, best: Any) -> None:
    """Check the best run's weights out by commit, and compare bit for bit."""
    from safetensors.numpy import load_file

    from coralx.records.blobs import BlobStore

    commit = best["weights"]
    target = work / "best.safetensors"
    coralx_cli("checkout", commit, "-o", str(target), cwd=work)
    checked_out = load_file(str(target))

    repo = coralx.Repository(work)
    record = json.loads((repo.path / "experiments" / f"{best.experiment_id}.json").read_text())
    npz = next(a for a in record["artifacts"] if a["name"] == "weights.npz")
    saved_bytes = BlobStore(repo).get(npz["blob"])
    with tempfile.NamedTemporaryFile(suffix=".npz") as f:
        f.write(saved_bytes)
        f.flush()
        saved = dict(np.load(f.name))
    assert sorted(saved) == sorted(checked_out), (sorted(saved), sorted(checked_out))
    for name, array in saved.items():
        got = checked_out[name]
        assert got.dtype == array.dtype and got.shape == array.shape, name
        assert got.tobytes() == array.tobytes(), f"{name} differs"
    _, _, x_val, y_val = make_moons(seed=best.config.data_seed)
    _, acc = loss_and_accuracy(checked_out, x_val, y_val)
    assert acc == best["val_acc"], (acc, best["val_acc"])
    total = sum(a.nbytes for a in saved.values())
    print(
        f"\nverified: {len(saved)} tensors ({total} bytes) of commit {commit[:12]} are bit-exact "
        f"copies of what run {best.experiment_id} saved, and score val_acc={acc:.3f} again"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="the coralx demo")
    parser.add_argument("--keep", metavar="DIR", help="build the demo store in DIR and keep it")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="coralx-demo-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        coralx_cli("init", cwd=work)
        print(f"\n# a 3x2 sweep, {args.workers} at a time, each configuration in its own process")
        result = train.run(["--workers", str(args.workers)], repo=work)
        print("\n# the same sweep again: every configuration is cached, nothing runs")
        again = train.run(["-q"], repo=work)
        print(f"skipped {again.counts['skipped']} of {len(again.results)} (sweep {again.sweep_id})")
        assert again.counts["skipped"] == len(again.results)
        coralx_cli("exp", "list", "--tag", "demo", cwd=work)
        found = json.loads(
            coralx_cli(
                *("exp", "best", "--metric", "val_acc", "--mode", "max", "--by", "last"),
                *("--limit", "1", "--json"),
                cwd=work,
                capture=True,
            )
        )[0]
        print(json.dumps({k: found[k] for k in ("experiment_id", "best_value", "commit_hash")}))
        coralx_cli("sweep", "show", str(result.sweep_id), cwd=work)
        best = result.results.best("val_acc", "max")
        assert best is not None
        print(
            f"\n# the best run: {best.name} ({best.experiment_id}), val_acc={best['val_acc']:.3f}"
        )
        # The tracker and the sweep agree on the best run and on its final weight commit.
        assert found["best_value"] == best["val_acc"], (found, best.result)
        assert found["commit_hash"] == best["weights"], (found, best.result)
        verify_checkout(work, best)
        # Each run's weight commits form a line of their own: the best run's history.
        coralx_cli("log", "--run", str(best.experiment_id), "-n", "3", cwd=work)
        ui = Path(sys.executable).with_name("coralx")
        command = f"{ui if ui.exists() else 'coralx'} -C {work} ui"
        if args.keep:
            print(f"\n# see these runs, the sweep and the weights in your browser:\n{command}")
        else:
            print(
                "\n# to see them in your browser, keep the store and serve it:\n"
                "python examples/demo.py --keep demo-store && coralx -C demo-store ui"
            )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
