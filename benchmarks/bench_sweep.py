"""Overhead per configuration of the sweep runner, for an empty function, per executor.

Baselines measured in the same run: a bare ``multiprocessing.Pool`` (fork) of the same size
mapping the same empty function, and a bare ``python -c pass`` per configuration. Targets:
the fork executor reaches at least 90 % of the bare pool's throughput; the subprocess executor
costs at most 2x a bare interpreter start per configuration.

    python benchmarks/bench_sweep.py [--configs 200] [--workers 2] [--tracked]

``--tracked`` adds rows for sweeps that write experiment records to a store (what a real
sweep costs: one record per configuration, started, ended and fsync'd by its own process).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import coralx
from benchmarks._empty_experiment import empty


def _nothing(_: int) -> None:
    return None


def _configs(n: int) -> Any:
    return coralx.grid({"i": list(range(n))})


def time_sweep(executor: str, n: int, workers: int, repo: Any = None) -> float:
    empty.configs(lambda: _configs(n))
    start = time.perf_counter()
    out = empty.run_sweep(
        executor=executor, workers=workers, track=repo is not None, repo=repo, new=True
    )
    elapsed = time.perf_counter() - start
    assert out.status == "completed", out.results.failed
    return elapsed


def time_pool(n: int, workers: int) -> float:
    ctx = multiprocessing.get_context("fork")
    start = time.perf_counter()
    with ctx.Pool(workers) as pool:
        pool.map(_nothing, range(n), chunksize=1)
    return time.perf_counter() - start


def time_python_c(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", type=int, default=200)
    parser.add_argument("--subprocess-configs", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tracked", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n, ns, w, r = args.configs, args.subprocess_configs, args.workers, args.repeats
    # Measure what users get: Python caching compiled modules (.pyc). With this variable set
    # (some sandboxes set it), every child process recompiles coralx from source, which
    # triples a subprocess configuration's cost and is not the runner's own overhead.
    if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
        sys.dont_write_bytecode = False
        print("note: PYTHONDONTWRITEBYTECODE was set; measuring with .pyc caching on")
    subprocess.run(
        [sys.executable, "-c", "import benchmarks._empty_experiment, coralx.sweeps._child"],
        cwd=Path(__file__).resolve().parent.parent,
        check=True,
    )  # compile and cache what a child imports, once

    rows: list[dict[str, Any]] = []

    def add(name: str, configs: int, workers: int, seconds: float) -> None:
        rows.append(
            {
                "what": name,
                "configs": configs,
                "workers": workers,
                "ms_per_config": 1000 * seconds / configs,
                "configs_per_s": configs / seconds,
            }
        )

    # Baseline and candidate are timed in alternation, round after round, and each is
    # reported by its median: on a shared machine, load drifts, and this keeps the two
    # exposed to the same drift.
    pools, forks, inlines, bares, subs1, subs2 = [], [], [], [], [], []
    for _ in range(r):
        pools.append(time_pool(n, w))
        forks.append(time_sweep("fork", n, w))
        inlines.append(time_sweep("inline", n, 1))
        bares.append(time_python_c(ns))
        subs1.append(time_sweep("subprocess", ns, 1))
        subs2.append(time_sweep("subprocess", ns, w))
    pool, fork, inline = median(pools), median(forks), median(inlines)
    bare, sub1, sub2 = median(bares), median(subs1), median(subs2)
    add("bare multiprocessing.Pool (fork)", n, w, pool)
    add("coralx fork executor", n, w, fork)
    add("coralx inline executor", n, 1, inline)
    add("bare `python -c pass`, one after another", ns, 1, bare)
    add("coralx subprocess executor", ns, 1, sub1)
    add("coralx subprocess executor", ns, w, sub2)
    if args.tracked:
        with tempfile.TemporaryDirectory() as tmp:
            repo = coralx.Repository.init(tmp)
            add("tracked: fork executor", ns, w, time_sweep("fork", ns, w, repo))
            add("tracked: subprocess executor", ns, w, time_sweep("subprocess", ns, w, repo))

    # Per-round ratios (each against the baseline timed just before it), then their median.
    fork_ratio = median([p / f for p, f in zip(pools, forks)])
    sub_ratio = median([s / b for s, b in zip(subs1, bares)])
    if args.json:
        print(
            json.dumps(
                {"rows": rows, "fork_vs_pool": fork_ratio, "subprocess_vs_python": sub_ratio}
            )
        )
        return
    print(f"sweep overhead, empty function ({os.cpu_count()} cpus, median of {r} rounds)\n")
    print(f"{'what':44} {'configs':>7} {'workers':>7} {'ms/config':>10} {'configs/s':>10}")
    for row in rows:
        print(
            f"{row['what']:44} {row['configs']:>7} {row['workers']:>7} "
            f"{row['ms_per_config']:>10.2f} {row['configs_per_s']:>10.1f}"
        )
    print()
    print(f"fork executor throughput / bare pool: {fork_ratio:.0%} (target >= 90%)")
    print(f"subprocess executor per config / bare interpreter: {sub_ratio:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
