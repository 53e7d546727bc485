"""A real local Ray cluster for the tests: a head and two worker nodes, each started with
``ray start ... --block`` on 127.0.0.1 in its own process group, and stopped by pid."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .s3_server import free_port


class RayCluster:
    def __init__(self, workers: int = 2, env: dict[str, str] | None = None) -> None:
        self.temp = tempfile.mkdtemp(prefix="rx", dir="/tmp")  # short: Ray's socket paths
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Each node's processes (and so each worker's own store) keep their files in here.
        self.tmpdir = Path(self.temp) / "tmp"
        self.tmpdir.mkdir()
        self.env = {
            **os.environ,
            **(env or {}),
            "RAY_USAGE_STATS_ENABLED": "0",
            "TMPDIR": str(self.tmpdir),
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.workers = workers

    def _ray(self, *args: str, log: str) -> None:
        exe = str(Path(sys.executable).with_name("ray"))
        with open(Path(self.temp) / log, "wb") as out:
            self.procs.append(
                subprocess.Popen(
                    [exe, "start", "--block", "--node-ip-address=127.0.0.1", *args],
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def start(self, timeout: float = 180) -> RayCluster:
        common = ["--object-store-memory=80000000", "--disable-usage-stats"]
        self._ray(
            "--head",
            f"--port={self.port}",
            "--num-cpus=0",  # configurations run on the worker nodes only
            "--include-dashboard=false",
            f"--temp-dir={self.temp}",
            *common,
            log="head.log",
        )
        self._wait_nodes(1, timeout)
        for i in range(self.workers):  # one at a time: two raylets starting at once on a
            # small loaded machine can time out
            self._ray(f"--address={self.address}", "--num-cpus=1", *common, log=f"w{i}.log")
            self._wait_nodes(2 + i, timeout)
        return self

    def _wait_nodes(self, count: int, timeout: float) -> None:
        code = (
            "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False);"
            "print(sum(1 for n in ray.nodes() if n['Alive']))"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"a ray node exited; see the logs in {self.temp}")
            out = subprocess.run(
                [sys.executable, "-c", code, self.address],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            alive = out.stdout.strip()
            if out.returncode == 0 and alive.isdigit() and int(alive) >= count:
                return
            time.sleep(1)
        raise RuntimeError(f"the Ray cluster did not reach {count} nodes in {timeout:.0f}s")

    def worker_pids(self) -> list[int]:
        """Pids of Ray's task-running worker processes of this cluster."""
        return [pid for pid, cmd in _processes() if self.temp in cmd and "default_worker" in cmd]

    def stop(self) -> None:
        """SIGTERM each node's process group, then SIGKILL; then any process of this cluster
        left (found by its unique temporary folder in the command line), by pid."""
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for pid, _cmd in _processes():
            if _cmd and self.temp in _cmd:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.temp, ignore_errors=True)


def _processes() -> list[tuple[int, str]]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        out.append((int(entry), raw.replace(b"\0", b" ").decode("utf-8", "replace")))
    return out
