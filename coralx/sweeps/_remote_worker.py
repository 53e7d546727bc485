"""Running a sweep's configurations on workers that do not share the driver's disk.

Each worker process keeps a store of its own (in its temporary folder), runs the task into it,
then pushes the run (record, journal, weights, files) to the sweep's remote. The driver
fetches from the remote after each configuration, so its store holds every run as if it had
run there. See ``RayExecutor(remote=...)``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["execute_and_push", "worker_store"]

_stores: dict[tuple[str, str | None], Any] = {}


def worker_store(url: str, endpoint_url: str | None) -> Any:
    """This process's own store, with the sweep's remote as ``origin`` (made once)."""
    from ..repository import Repository

    found = _stores.get((url, endpoint_url))
    if found is not None:
        return found
    root = Path(tempfile.mkdtemp(prefix=f"coralx-worker-{os.getpid()}-"))
    repo = Repository.init(root)
    repo.add_remote("origin", url, endpoint_url)
    _stores[(url, endpoint_url)] = repo
    return repo


def _moved(path: str | None, old_root: str, new_root: str) -> str | None:
    if path and old_root and path.startswith(old_root.rstrip("/") + "/"):
        return new_root + path[len(old_root.rstrip("/")) :]
    return path


def execute_and_push(data: dict[str, Any], url: str, endpoint_url: str | None) -> dict[str, Any]:
    """Run one task into this worker's own store, then push it; the outcome as a dict."""
    from ._child import execute_task, wait_durable
    from .task import Outcome, Task

    repo = worker_store(url, endpoint_url)
    task = Task.from_dict(data)
    driver_root = task.repo or ""
    task.repo = str(repo.root)
    task.out_dir = _moved(task.out_dir, driver_root, str(repo.root))
    task.log_dir = _moved(task.log_dir, driver_root, str(repo.root))
    outcome: Outcome = execute_task(task)
    wait_durable()
    try:
        repo.push("origin")
    except Exception as exc:  # the run happened but did not reach the remote: say so
        outcome.status = "failed"
        outcome.error = {
            "type": type(exc).__name__,
            "message": f"the run finished but pushing it to {url} failed: {exc}",
        }
    return outcome.to_dict()
