"""Benchmark of the framework integrations, each against its baseline in the same run.

1. **Logger overhead.** A Lightning fit of 2,000 steps (an MLP, batch 64, on the CPU) that
   logs 4 metrics at every step (``log_every_n_steps=1``: the hard case, every value reaches
   the logger), with ``logger=False``, with Lightning's ``CSVLogger`` and with
   ``CoralxLogger``, and with a logger that keeps nothing (what Lightning itself spends on
   handing values to any logger). They are interleaved, ``--repeat`` times, and the median is kept.
   Target: CoralxLogger at most 5% over ``logger=False``.
2. **Checkpoints.** 10 checkpoints of a 6.3M-parameter module fine-tuned with Adam between
   them (5 steps each: every weight changes, the hard case for deduplication), saved by
   Lightning's own ``trainer.save_checkpoint`` (``torch.save``, then fsync, as coralx
   fsyncs its chunks) and committed by coralx the way ``CoralxLogger`` does
   (``stage_weights(module)`` + ``commit``), without and with the optimizer state. Time per
   checkpoint and bytes on disk after the 10; coralx's delta re-encoding of replaced chunks
   runs on a background thread and its time is shown apart.
3. **MLflow import.** ``--runs`` runs (1,000) with 100 steps of 3 metrics each, written by
   MLflow to a SQLite database and to a FileStore folder (not timed), then imported by
   ``coralx import mlflow``; beside it, MLflow's own ``search_runs`` over them, and reading
   every metric history through MLflow's client (what an import must read).

The machine may be shared: every row shows CPU time (``process_time``, background threads
included) beside wall time.

    python benchmarks/bench_integrations.py              # all three
    python benchmarks/bench_integrations.py --only logger --steps 500
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
    )


def _table(title: str, head: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print(f"\n{title}")
    print(_row(head, widths))
    print(_row(["-" * w for w in widths], widths))
    for r in rows:
        print(_row(r, widths))


# -- 1. logger overhead -------------------------------------------------------------------------


def _fit(kind: str, steps: int, root: Path) -> tuple[float, float]:
    import lightning.pytorch as L
    import torch
    from lightning.pytorch.loggers import CSVLogger, Logger

    from coralx import Repository
    from coralx.integrations.lightning import CoralxLogger

    class MLP(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
            )

        def training_step(self, batch: Any, _i: int) -> Any:
            x, y = batch
            logits = self.net(x)
            loss = torch.nn.functional.cross_entropy(logits, y)
            acc = (logits.argmax(1) == y).float().mean()
            self.log_dict({"loss": loss, "acc": acc, "logit_mean": logits.mean(),
                           "logit_std": logits.std()})  # fmt: skip
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    torch.manual_seed(0)
    x, y = torch.randn(64 * 50, 64), torch.randint(0, 10, (64 * 50,))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)

    class NullLogger(Logger):
        """Takes every value and keeps none: what Lightning itself spends on a logger."""

        name, version = "null", 0

        def log_metrics(self, metrics: Any, step: Any = None) -> None:
            pass

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            pass

    folder = Path(tempfile.mkdtemp(dir=root))
    logger: Any = False
    if kind == "null":
        logger = NullLogger()
    elif kind == "csv":
        logger = CSVLogger(folder)
    elif kind == "coralx":
        logger = CoralxLogger("bench", repo=Repository(folder, init=True))
    trainer = L.Trainer(
        max_steps=steps, logger=logger, log_every_n_steps=1, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
        default_root_dir=folder,
    )  # fmt: skip
    # In a folder outside any git work tree: the run's code snapshot (a one-off per run,
    # measured by bench_tracker.py) is not what this measures.
    here = os.getcwd()
    os.chdir(folder)
    try:
        wall, cpu, _ = _timed(lambda: trainer.fit(MLP(), data))
    finally:
        os.chdir(here)
    if kind == "coralx":
        run = logger.run
        assert len(run.get_metric_history("loss")) == steps, "every value must be stored"
    return wall, cpu


def bench_logger(steps: int, repeat: int, root: Path) -> None:
    import torch

    torch.set_num_threads(1)  # the same threads for every fit on a shared machine
    kinds = ["none", "null", "csv", "coralx"]
    _fit("coralx", 50, root)  # warm-up: imports, first-call costs
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
    for _ in range(repeat):
        for kind in kinds:
            results[kind].append(_fit(kind, steps, root))
    base_wall = statistics.median(w for w, _ in results["none"])
    base_cpu = statistics.median(c for _, c in results["none"])
    rows = []
    labels = ["logger=False", "a Logger that keeps nothing", "CSVLogger", "CoralxLogger"]
    for kind, label in zip(kinds, labels):
        wall = statistics.median(w for w, _ in results[kind])
        cpu = statistics.median(c for _, c in results[kind])
        rows.append([label, f"{wall:.2f} s", f"{(wall / base_wall - 1) * 100:+.1f}%",
                     f"{cpu:.2f} s", f"{(cpu / base_cpu - 1) * 100:+.1f}%",
                     f"{wall / steps * 1e3:.2f} ms"])  # fmt: skip
    _table(
        f"Lightning fit, {steps} steps, 4 metrics logged every step (median of {repeat})",
        ["logger", "wall", "vs False", "cpu", "vs False", "per step"],
        rows,
    )


# -- 2. checkpoints -----------------------------------------------------------------------------


def bench_checkpoints(root: Path, count: int = 10) -> None:
    import lightning.pytorch as L
    import torch

    from coralx import Repository

    torch.set_num_threads(2)

    class Wide(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.Sequential(*[torch.nn.Linear(1024, 1024) for _ in range(6)])

        def forward(self, x: Any) -> Any:
            return self.layers(x)

        def training_step(self, batch: Any, _i: int) -> Any:
            return self(batch[0]).pow(2).mean()

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=1e-4)

    torch.manual_seed(0)
    model = Wide()
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(64, 1024)), 32)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=root)  # fmt: skip
    trainer.fit(model, data)
    opt = trainer.optimizers[0]
    params = sum(p.numel() for p in model.parameters())
    folders = {k: root / f"ckpt-{k}" for k in ("lw", "lf")}
    for f in folders.values():
        f.mkdir()
    repos = {k: Repository(root / f"store-{k}", init=True) for k in ("cw", "cf")}
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in ("lw", "lf", "cw", "cf")}

    def lightning_save(kind: str, i: int) -> None:
        path = folders[kind] / f"step{i}.ckpt"
        trainer.save_checkpoint(path, weights_only=kind == "lw")
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    def coralx_commit(kind: str, i: int) -> None:
        repo = repos[kind]
        repo.stage_weights(model, optimizer=opt if kind == "cf" else None)
        repo.commit(f"step {i}")

    batch = torch.randn(32, 1024)
    for i in range(count):
        for _ in range(5):  # fine-tune a little: every weight moves
            opt.zero_grad()
            model(batch).pow(2).mean().backward()
            opt.step()
        for kind in ("lw", "lf"):
            wall, cpu, _ = _timed(lambda: lightning_save(kind, i))  # noqa: B023
            times[kind].append((wall, cpu))
        for kind in ("cw", "cf"):
            wall, cpu, _ = _timed(lambda: coralx_commit(kind, i))  # noqa: B023
            times[kind].append((wall, cpu))
    sizes = {k: sum(p.stat().st_size for p in f.iterdir()) for k, f in folders.items()}
    for kind, repo in repos.items():
        sizes[kind] = repo.du().stored_bytes
    labels = {
        "lw": "Lightning save_checkpoint, weights only",
        "cw": "coralx commit, weights (CoralxLogger)",
        "lf": "Lightning save_checkpoint, with optimizer",
        "cf": "coralx commit, weights + optimizer",
    }
    rows = []
    for kind in ("lw", "cw", "lf", "cf"):
        walls = [w for w, _ in times[kind]]
        cpus = [c for _, c in times[kind]]
        rows.append([labels[kind], f"{statistics.median(walls) * 1e3:.0f} ms",
                     f"{statistics.median(cpus) * 1e3:.0f} ms",
                     f"{sizes[kind] / 2**20:.1f} MiB"])  # fmt: skip
    _table(
        f"{count} checkpoints of a {params / 1e6:.1f}M-parameter module, Adam between them "
        "(median per checkpoint)",
        ["", "wall", "cpu", f"on disk after {count}"],
        rows,
    )


# -- 3. MLflow import ---------------------------------------------------------------------------


def _write_mlflow(uri: str, runs: int, artifacts: Path) -> None:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("bench", artifact_location=artifacts.as_uri())
    t0 = 1_733_000_000_000
    for r in range(runs):
        run = client.create_run(exp, run_name=f"run-{r}", start_time=t0 + r * 1000)
        metrics = [Metric(k, 1.0 / (s + 1) + r, t0 + r * 1000 + s, s)
                   for s in range(100) for k in ("loss", "acc", "lr")]  # fmt: skip
        for i in range(0, len(metrics), 1000):
            client.log_batch(run.info.run_id, metrics=metrics[i : i + 1000],
                             params=[Param("lr", str(r))] if i == 0 else [])  # fmt: skip
        client.set_terminated(run.info.run_id, end_time=t0 + r * 1000 + 500)


def bench_import(runs: int, root: Path) -> None:
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    from mlflow.tracking import MlflowClient

    from coralx import Repository
    from coralx.importers.mlflow import import_mlflow

    rows = []
    for kind in ("sqlite", "filestore"):
        uri = f"sqlite:///{root / 'mlflow.db'}" if kind == "sqlite" else (root / "mlruns").as_uri()
        started = time.perf_counter()
        _write_mlflow(uri, runs, root / f"art-{kind}")
        written = time.perf_counter() - started
        source = uri if kind == "sqlite" else str(root / "mlruns")
        repo = Repository(root / f"import-{kind}", init=True)
        wall, cpu, summary = _timed(lambda: import_mlflow(repo, source))  # noqa: B023
        assert summary.imported == runs and summary.metrics == runs * 300
        again_wall, again_cpu, again = _timed(lambda: import_mlflow(repo, source))  # noqa: B023
        assert again.imported == 0
        client = MlflowClient(tracking_uri=uri)
        exp_id = client.get_experiment_by_name("bench").experiment_id

        def search() -> list[Any]:
            out, token = [], None
            while True:
                page = client.search_runs([exp_id], max_results=1000, page_token=token)  # noqa: B023
                out += page
                token = page.token
                if not token:
                    return out

        s_wall, s_cpu, found = _timed(search)
        assert len(found) == runs

        def histories(found: list[Any] = found, client: Any = client) -> int:
            keys = ("loss", "acc", "lr")
            return sum(
                len(client.get_metric_history(r.info.run_id, k)) for r in found for k in keys
            )

        h_wall, h_cpu, values = _timed(histories)
        assert values == runs * 300
        label = "SQLite" if kind == "sqlite" else "FileStore"
        rows += [
            [f"{label}: coralx import mlflow", f"{wall:.2f} s", f"{cpu:.2f} s",
             f"{runs / wall:.0f} runs/s"],
            [f"{label}: coralx import again (adds nothing)", f"{again_wall:.2f} s",
             f"{again_cpu:.2f} s", "-"],
            [f"{label}: mlflow search_runs (latest values)", f"{s_wall:.2f} s", f"{s_cpu:.2f} s",
             f"{runs / s_wall:.0f} runs/s"],
            [f"{label}: mlflow get_metric_history, all", f"{h_wall:.2f} s", f"{h_cpu:.2f} s",
             f"{runs / h_wall:.0f} runs/s"],
            [f"{label}: (writing them with mlflow)", f"{written:.1f} s", "-", "-"],
        ]  # fmt: skip
    _table(
        f"MLflow: {runs} runs x 100 steps x 3 metrics ({runs * 300:,} values)",
        ["", "wall", "cpu", "rate"],
        rows,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["logger", "checkpoints", "import"])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.only in (None, "logger"):
            bench_logger(args.steps, args.repeat, root)
        if args.only in (None, "checkpoints"):
            bench_checkpoints(root)
        if args.only in (None, "import"):
            bench_import(args.runs, root)


if __name__ == "__main__":
    main()
