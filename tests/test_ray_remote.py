"""A sweep on a real Ray cluster (a head and two worker nodes) whose workers do not use the
driver's store: each writes its runs into a store of its own and pushes them to a remote
(the local S3 server); the driver fetches them."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import coralx
from coralx import Repository
from coralx.experiments import ExperimentTracker
from coralx.sweeps import Config, Run

from .ray_cluster import RayCluster
from .s3_server import ACCESS_KEY, SECRET_KEY, S3Server

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'coralx[ray]')")


@coralx.experiment(name="ray-remote", metric="loss", mode="min")
def ray_exp(config: Config, run: Run) -> dict[str, Any]:
    if config.get("die"):
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 of the worker running this one
    for step in range(3):
        run.log("loss", config.x / (step + 1), step=step)
        run.commit_weights({"w": np.full(1000, config.x * 10 + step, "f4")}, f"step {step}")
    (run.out / "report.txt").write_text(f"x={config.x} pid={os.getpid()}")
    return {"x": config.x, "pid": os.getpid()}


@ray_exp.configs
def _configs() -> Any:
    return [
        *({"name": f"x{x}", "x": x} for x in (1, 2, 3, 4)),
        {"name": "dies", "x": 0, "die": True},
    ]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    here = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(
        [here, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
    )
    # The nodes have the S3 credentials in their environment, as machines of a real cluster
    # have theirs (the standard AWS chain): coralx never ships a secret to them.
    creds = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
    }
    c = RayCluster(workers=2, env={"PYTHONPATH": path, **creds})
    try:
        c.start()
        yield c
    finally:
        c.stop()


def test_a_ray_sweep_without_a_shared_store_exchanges_runs_through_the_remote(
    tmp_path: Path, cluster: RayCluster, s3: S3Server
) -> None:
    from coralx.sweeps.executors import RayExecutor

    driver = Repository.init(tmp_path / "driver")
    url = f"s3://{s3.make_bucket()}/sweeps"
    executor = RayExecutor(address=cluster.address, remote=url, endpoint_url=s3.endpoint)
    result = ray_exp.run_sweep(repo=driver, executor=executor, workers=2)
    executor.shutdown()
    by_name = {r.name: r for r in result.results}
    assert {n: r.status for n, r in by_name.items()} == {
        "x1": "completed",
        "x2": "completed",
        "x3": "completed",
        "x4": "completed",
        "dies": "failed",
    }, {n: r.error for n, r in by_name.items()}
    assert "crash" in str(by_name["dies"].error).lower() or by_name["dies"].error
    tracker = ExperimentTracker(driver)
    pids = set()
    for name in ("x1", "x2", "x3", "x4"):
        res = by_name[name]
        eid = str(res.experiment_id)
        record = tracker.get(eid)
        assert record.status.value == "completed"
        assert [m.value for m in record.metrics] == pytest.approx(
            [res.config["x"] / (s + 1) for s in range(3)]
        )
        line = driver.log(run=eid)
        assert [c.message for c in line] == ["step 2", "step 1", "step 0"]
        for i, commit in enumerate(reversed(line)):
            w = driver.get_all_weights(commit.commit_hash)["w"]
            assert np.array_equal(w, np.full(1000, res.config["x"] * 10 + i, "f4"))
        pids.add(res["pid"])
        assert res["pid"] != os.getpid()
        report = driver.path / "sweeps" / str(result.sweep_id) / "out" / eid / "report.txt"
        assert report.read_text().startswith(f"x={res.config['x']}")  # a sweep file, fetched
    # The workers ran into stores of their own: the driver's folder only got what it fetched.
    own = list(cluster.tmpdir.glob("coralx-worker-*"))
    assert len(own) >= 2  # a store of its own in each worker process that ran a configuration
    assert all((p / ".coralx" / "refs" / "runs").is_dir() for p in own)
    assert driver.fsck().ok
