"""A new user's first hour with coralx, as one script that checks what it sees.

    python examples/new_user.py            # in a fresh temporary project folder
    python examples/new_user.py --dir DIR  # in DIR (created; must be empty)

What it does, as a PyTorch user would: trains a small MLP on scikit-learn's digits four times
(two runs complete, one raises after committing weights, one is killed with ``kill -9`` in a
subprocess), finds the best run, loads its weights into a fresh model and checks its accuracy,
runs a sweep with two workers, and fetches the sweep's heatmap from the viewer's JSON API
(``coralx ui`` started as a real server). Every step checks its result; the script exits 1
at the first surprise, saying what it expected.

Needs torch and scikit-learn (``pip install -e '.[dev]'`` has both).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import coralx

EPOCHS = 12


# -- the model and the data --------------------------------------------------------------------


def digits() -> tuple[Any, Any, Any, Any]:
    """scikit-learn's 8x8 digits (shipped with the package: no download), split 80/20."""
    import torch
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    cut = int(0.8 * len(x))
    return x[:cut], y[:cut], x[cut:], y[cut:]


def mlp(hidden: int) -> Any:
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)
    )


def accuracy(model: Any, x: Any, y: Any) -> float:
    import torch

    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


def train_epochs(
    model: Any, lr: float, epochs: int, log: Any, commit: Any, stop_after: int | None = None
) -> float:
    """Full-batch Adam on the digits; ``log(val_acc, epoch)`` and ``commit(epoch)`` each epoch.
    Raises after ``stop_after`` epochs (a run that diverges)."""
    import torch

    x, y, vx, vy = digits()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    val_acc = 0.0
    for epoch in range(epochs):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        val_acc = accuracy(model, vx, vy)
        log(val_acc, epoch)
        commit(epoch)
        if stop_after is not None and epoch + 1 >= stop_after:
            raise FloatingPointError(f"loss diverged at epoch {epoch}")
    return val_acc


# -- four tracked runs -------------------------------------------------------------------------


def tracked_run(
    repo: Any, tracker: Any, name: str, hidden: int, lr: float, **kw: Any
) -> tuple[str, float]:
    import torch

    torch.manual_seed(hidden)
    model = mlp(hidden)
    with tracker.start(name, params={"hidden": hidden, "lr": lr}, tags=["digits"]) as exp:

        def commit(epoch: int) -> None:
            repo.stage_weights(model.state_dict())
            repo.commit(f"{name}: epoch {epoch}")

        val_acc = train_epochs(
            model, lr, EPOCHS, lambda v, e: tracker.log("val_acc", v, step=e), commit, **kw
        )
    return exp.experiment_id, val_acc


def killed_child(folder: str, ready: str) -> None:
    """Runs in a subprocess: a run that commits twice, says so, then waits to be killed."""
    from coralx import Repository
    from coralx.experiments import ExperimentTracker

    repo = Repository(folder)
    tracker = ExperimentTracker(repo)
    model = mlp(16)
    exp = tracker.start("digits-killed", params={"hidden": 16, "lr": 0.01}, tags=["digits"])

    def commit(epoch: int) -> None:
        repo.stage_weights(model.state_dict())
        repo.commit(f"killed: epoch {epoch}")

    train_epochs(model, 0.01, 2, lambda v, e: tracker.log("val_acc", v, step=e), commit)
    tracker.flush(wait=True)
    Path(ready).write_text(exp.experiment_id, encoding="utf-8")
    time.sleep(600)


def kill_a_run(folder: Path) -> str:
    ready = folder / "killed.ready"
    child = subprocess.Popen(
        [sys.executable, __file__, "--killed-child", str(folder), str(ready)],
        env={**os.environ, "PYTHONPATH": _pythonpath()},
    )
    deadline = time.monotonic() + 300
    while not ready.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the run to be killed ended before it was killed")
        time.sleep(0.1)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    return ready.read_text(encoding="utf-8")


# -- a sweep with two workers ------------------------------------------------------------------


@coralx.experiment(name="digits-sweep", tags=["digits"], metric="val_acc", mode="max")
def sweep_train(config: coralx.Config, run: coralx.Run) -> dict:
    import torch

    torch.set_num_threads(1)  # two workers on a small machine
    torch.manual_seed(run.seed)  # every configuration has its own seed
    model = mlp(config.hidden)

    def commit(epoch: int) -> None:
        if epoch == config.epochs - 1:
            run.commit_weights(model.state_dict(), message=f"{run.name}: final")

    val_acc = train_epochs(
        model, config.lr, config.epochs, lambda v, e: run.log("val_acc", v, step=e), commit
    )
    return {"val_acc": val_acc}


@sweep_train.configs
def _sweep_configs() -> Any:
    return coralx.grid({"hidden": [16, 64], "lr": [0.003, 0.03]}, base={"epochs": EPOCHS})


@sweep_train.report
def _sweep_report(results: coralx.ResultSet) -> Any:
    best = results.best("val_acc", "max")
    return None if best is None else f"best: {best.name}"


# -- the viewer --------------------------------------------------------------------------------


def heatmap_from_viewer(folder: Path, sweep_id: str) -> dict[str, Any]:
    """Start ``coralx ui`` on a free port, fetch ``/api/sweeps/<id>``, stop it (by its pid)."""
    coralx_cli = [sys.executable, "-m", "coralx", "-C", str(folder), "ui", "--port", "0"]
    server = subprocess.Popen(
        coralx_cli,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": _pythonpath()},
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if "http://" not in line:
            raise SystemExit(f"coralx ui did not start: {line}{server.stdout.read()}")
        url = line.split("http://", 1)[1].split("/", 1)[0]
        with urllib.request.urlopen(f"http://{url}/api/sweeps/{sweep_id}", timeout=30) as resp:
            data: dict[str, Any] = json.load(resp)
        return data
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()


# -- the first hour ----------------------------------------------------------------------------


def check(ok: bool, what: str) -> None:
    if not ok:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def first_hour(folder: Path) -> None:
    import torch

    from coralx import Repository
    from coralx.experiments import ExperimentTracker

    os.chdir(folder)
    repo = Repository(folder, init=True)
    tracker = ExperimentTracker(repo)

    ids = {}
    for name, hidden, lr in (("digits-small", 16, 0.01), ("digits-wide", 64, 0.01)):
        ids[name], _ = tracked_run(repo, tracker, name, hidden, lr)
    try:
        tracked_run(repo, tracker, "digits-diverged", 32, 0.01, stop_after=3)
    except FloatingPointError:
        pass
    failed = tracker.list(name="digits-diverged")[0]
    check(str(failed.status.value) == "failed", "a run that raises ends FAILED")
    check(
        failed.commit_hash is not None and failed.commit_hash == failed.weight_commits[-1],
        "a failed run names the last weights it committed",
    )
    killed_id = kill_a_run(folder)
    killed = ExperimentTracker(Repository(folder)).get(killed_id)
    check(str(killed.status.value) == "failed", "a run killed with kill -9 is marked FAILED")
    check(killed.metrics_summary["val_acc"]["count"] == 2, "its logged values are kept")
    check(len(killed.weight_commits) == 2, "and so are its weight commits")
    check(killed.commit_hash == killed.weight_commits[-1], "the last of which it names")

    best = tracker.find_best("val_acc", mode="max", status="completed", tags=["digits"])[0]
    check(best["name"] in ids, f"the best completed run is {best['name']}")
    model = mlp(int(best["params"]["hidden"]))
    model.load_state_dict(repo.get_all_weights(best["commit_hash"], framework="torch"))
    _, _, vx, vy = digits()
    got = accuracy(model, vx, vy)
    recorded = tracker.get(best["experiment_id"]).metrics_summary["val_acc"]["last"]
    check(abs(got - recorded) < 1e-9 and got > 0.8, f"its weights score {got:.3f} again")
    check(isinstance(next(iter(model.state_dict().values())), torch.Tensor), "as torch tensors")

    result = sweep_train.run_sweep(workers=2, repo=str(folder))
    check(result.status == "completed", "a sweep with two workers completes")
    seeds = {r.config.seed for r in result.results}
    check(len(seeds) == 4, "each configuration ran with its own seed")
    names = {e.name for e in tracker.list(name="hidden64*")}
    check(names == {"digits-sweep/hidden64_lr0.003", "digits-sweep/hidden64_lr0.03"}, "runs named")

    data = heatmap_from_viewer(folder, str(result.sweep_id))
    grid = data["grid"]
    check(data["shape"] == [2, 2] and grid is not None, "the viewer lays the sweep out 2x2")
    by_cell = {(r.config.hidden, r.config.lr): r["val_acc"] for r in result.results}
    expected = [[by_cell[(h, lr)] for lr in (0.003, 0.03)] for h in (16, 64)]
    check(
        all(abs(a - b) < 1e-12 for row, exp in zip(grid, expected) for a, b in zip(row, exp)),
        "each heatmap cell is its configuration's val_acc",
    )
    print("all checks passed")


def _pythonpath() -> str:
    here = str(Path(coralx.__file__).resolve().parent.parent)
    return os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="the project folder (default: a new temporary one)")
    parser.add_argument("--killed-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.killed_child:
        killed_child(*args.killed_child)
        return
    folder = Path(args.dir or tempfile.mkdtemp(prefix="coralx-first-hour-")).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise SystemExit(f"{folder} is not empty")
    print(f"project folder: {folder}")
    first_hour(folder)


if __name__ == "__main__":
    main()
