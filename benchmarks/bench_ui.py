"""How fast the viewer's server answers, against `coralx exp list --json` on the same store.

    python benchmarks/bench_ui.py [--quick]

Measures, in process through Starlette's TestClient, the server time (the app's own
Server-Timing header: from the request reaching the app to the response starting) and the wall
time a client saw, for: the runs page's API (`/api/runs`: the first request, which parses every
record; then pages of the same query, which the server keeps sorted until a record changes;
then a new filter and sort each time) with 2,000 and 10,000 runs; one metric of 1,000,000
points (downsampled for the chart; first read of the journal, then cached); the sweep page of a
10x10 sweep. Where Debian's Chromium and Playwright are installed, also the wall time from
opening the run page to its 1,000,000-point chart being drawn, through a real `coralx ui`.
The baseline is the wall time of `coralx exp list --json` (a new process) on the same store.
Records are written with the tracker's own model (`ExperimentRecord`) and indexed once with
`coralx reindex`, so both sides read the same store.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from coralx import Repository
from coralx.ids import new_experiment_id, new_sweep_id


def _write_runs(repo: Repository, n: int, sweep: tuple[str, int, int] | None = None) -> None:
    from coralx.records.models import ExperimentRecord

    rng = random.Random(n)
    folder = repo.path / "experiments"
    for i in range(n):
        run_id = new_experiment_id()
        fields: dict[str, Any] = {
            "experiment_id": run_id,
            "name": f"run-{i % 50}",
            "status": rng.choice(["completed", "completed", "failed", "running"]),
            "params": {"lr": rng.choice([0.1, 0.01, 0.001]), "batch": rng.choice([16, 32, 64])},
            "tags": rng.sample(["bert", "gpt", "vit", "prod", "ablation"], 2),
            "metrics_summary": {
                "loss": {"last": rng.random(), "min": 0.01, "max": 2.0, "count": 1000},
                "acc": {"last": rng.random(), "min": 0.0, "max": 1.0, "count": 1000},
            },
        }
        if sweep is not None:
            sweep_id, _rows, cols = sweep
            fields["sweep"] = {
                "sweep_id": sweep_id,
                "config_name": f"c{i}",
                "config_hash": f"{i:064x}",
                "position": [i // cols, i % cols],
                "repeat": 0,
            }
            fields["params"] = {"lr": 10.0 ** -(i // cols), "width": 2 ** (i % cols)}
            fields["status"] = "completed"
        record = ExperimentRecord(**fields)
        (folder / f"{run_id}.json").write_text(record.to_json(), encoding="utf-8")


def _reindex(root: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "coralx", "-C", str(root), "reindex"],
        check=True,
        capture_output=True,
    )


def _time(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _exp_list(root: Path, repeat: int) -> float:
    def run() -> None:
        out = subprocess.run(
            [sys.executable, "-m", "coralx", "-C", str(root), "exp", "list", "--json"],
            check=True,
            capture_output=True,
        )
        assert out.stdout.strip().startswith(b"[") or out.stdout.strip().startswith(b"{")

    return _time(run, repeat)


def _client(repo: Repository) -> Any:
    from starlette.testclient import TestClient

    from coralx.web.app import create_app

    return TestClient(create_app(repo))


def _get(client: Any, path: str) -> Any:
    response = client.get(path)
    assert response.status_code == 200, (path, response.text[:200])
    return response


def _server(client: Any, path: str, repeat: int) -> tuple[float, float]:
    """Median (server time from the Server-Timing header, wall time through the client)."""
    server, wall = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        response = _get(client, path)
        wall.append(time.perf_counter() - start)
        timing = response.headers["server-timing"]
        server.append(float(timing.split("dur=")[1]) / 1000)
    return statistics.median(server), statistics.median(wall)


def bench_runs(base: Path, n: int, repeat: int) -> list[tuple[str, float, float, str]]:
    root = base / f"runs-{n}"
    repo = Repository.init(root)
    _write_runs(repo, n)
    _reindex(root)
    client = _client(repo)
    cold = _server(client, "/api/runs", 1)
    warm = _server(client, "/api/runs", repeat)
    filtered = _server(client, "/api/runs?tag=bert&sort=params.lr&order=asc&offset=100", repeat)
    by_metric = _server(client, "/api/runs?sort=metrics.loss.min&status=completed", repeat)
    # A new filter and sort each time: nothing but the parsed records comes from a cache.
    fresh = [
        _server(client, f"/api/runs?sort=metrics.acc.last&order={o}&name=*-{i}", 1)
        for i in range(repeat // 2 + 1)
        for o in ("asc", "desc")
    ]
    uncached = (statistics.median(f[0] for f in fresh), statistics.median(f[1] for f in fresh))
    baseline = _exp_list(root, max(3, repeat // 5))
    return [
        (f"/api/runs, {n:,} runs, first request (parses every record)", *cold, ""),
        (f"/api/runs, {n:,} runs, page 1 by created", *warm, "target <= 50 ms at 2,000"),
        (f"/api/runs, {n:,} runs, tag filter + param sort + page 3", *filtered, ""),
        (f"/api/runs, {n:,} runs, status filter + metric sort", *by_metric, ""),
        (f"/api/runs, {n:,} runs, a new name filter + metric sort each time", *uncached, ""),
        (f"baseline: coralx exp list --json, {n:,} runs (new process)", baseline, baseline, ""),
    ]


def bench_metric(base: Path, points: int, repeat: int) -> list[tuple[str, float, float, str]]:
    from coralx.experiments import ExperimentTracker

    root = base / "metric"
    repo = Repository.init(root)
    tracker = ExperimentTracker(repo, capture_code=False)
    exp = tracker.start("long")
    rng = random.Random(0)
    log = tracker.log
    for step in range(points):
        log("loss", rng.random(), step)
    tracker.end()
    run_id = exp.experiment_id
    path = f"/api/runs/{run_id}/metric?name=loss&points=2000"
    colds = [_server(_client(repo), path, 1) for _ in range(3)]
    cold = (statistics.median(c[0] for c in colds), statistics.median(c[1] for c in colds))
    client = _client(repo)
    _get(client, path)
    warm = _server(client, path, repeat)
    sizes = _get(client, path).json()
    assert sizes["total"] == points
    shown = len(sizes["steps"])
    full = _server(client, f"/api/runs/{run_id}/metric.json?name=loss", 1)

    def baseline() -> None:
        ExperimentTracker(repo).get(run_id).get_metric_history("loss")

    base_t = _time(baseline, 1)
    browser = bench_browser(root, run_id, points)
    return [
        *browser,
        (f"metric of {points:,} points -> {shown:,} points, first read", *cold, "target <= 200 ms"),
        (f"metric of {points:,} points -> {shown:,} points, cached", *warm, ""),
        (f"full {points:,}-point JSON download", *full, ""),
        (f"baseline: tracker get_metric_history, {points:,} points", base_t, base_t, "in process"),
    ]


def bench_browser(root: Path, run_id: str, points: int) -> list[tuple[str, float, float, str]]:
    """Wall time from opening the run page in headless Chromium to its chart of ``points``
    points being drawn, through a real `coralx ui` process; skipped without a browser."""
    import os
    import re
    import signal

    chromium = "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return []
    if not os.access(chromium, os.X_OK):
        return []
    log = root / "ui.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "coralx", "-C", str(root), "ui", "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = None
        for _ in range(600):
            match = re.search(r"at (http://\S+/)", log.read_text())
            if match:
                url = match.group(1)
                break
            time.sleep(0.05)
        assert url, log.read_text()
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
        times = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=flags)
            page = browser.new_page()
            for _ in range(3):
                start = time.perf_counter()
                page.goto(f"{url}runs/{run_id}")
                page.wait_for_selector(f".chart[data-total='{points}'] .scatterlayer .trace")
                times.append(time.perf_counter() - start)
            browser.close()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    t = statistics.median(times)
    return [(f"run page in Chromium: {points:,}-point chart drawn", t, t, "goal: well under 1 s")]


def bench_sweep(base: Path, repeat: int) -> list[tuple[str, float, float, str]]:
    root = base / "sweep"
    repo = Repository.init(root)
    sweep_id = new_sweep_id()
    _write_runs(repo, 100, sweep=(sweep_id, 10, 10))
    _reindex(root)
    client = _client(repo)
    cold = _server(client, f"/api/sweeps/{sweep_id}", 1)
    warm = _server(client, f"/api/sweeps/{sweep_id}", repeat)
    assert len(_get(client, f"/api/sweeps/{sweep_id}").json()["grid"]) == 10
    baseline = _exp_list(root, 3)
    return [
        ("/api/sweeps/<id>, 10x10 sweep, first request", *cold, ""),
        ("/api/sweeps/<id>, 10x10 sweep", *warm, ""),
        ("baseline: coralx exp list --json, 100 runs (new process)", baseline, baseline, ""),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()
    sizes = [200, 1000] if args.quick else [2000, 10_000]
    points = 100_000 if args.quick else 1_000_000
    repeat = 5 if args.quick else 25
    rows: list[tuple[str, float, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="coralx-bench-ui-") as tmp:
        base = Path(tmp)
        for n in sizes:
            rows += bench_runs(base, n, repeat)
        rows += bench_metric(base, points, repeat)
        rows += bench_sweep(base, repeat)
    width = max(len(r[0]) for r in rows)
    print(f"{'what (median)':<{width}}  {'server ms':>9}  {'wall ms':>8}  note")
    print(f"{'-' * width}  {'-' * 9}  {'-' * 8}  {'-' * 24}")
    for what, server, wall, note in rows:
        print(f"{what:<{width}}  {server * 1000:9.1f}  {wall * 1000:8.1f}  {note}")


if __name__ == "__main__":
    main()
