"""Helpers for the viewer's tests: records written as the tracker writes them."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from coralx import Repository
from coralx.ids import new_experiment_id


def write_record(repo: Repository, **fields: Any) -> str:
    """An experiment record in ``.coralx/experiments`` with the contract's keys."""
    run_id = fields.pop("experiment_id", None) or new_experiment_id()
    record: dict[str, Any] = {
        "schema_version": 1,
        "experiment_id": run_id,
        "name": "run",
        "description": None,
        "status": "completed",
        "created_at": "2026-11-23T10:00:00+00:00",
        "started_at": "2026-11-23T10:00:00+00:00",
        "ended_at": "2026-11-23T10:01:40+00:00",
        "params": {},
        "tags": [],
        "commit_hash": None,
        "weight_commits": [],
        "code": {"commit": None, "branch": None, "dirty": False, "snapshot": None},
        "branch": None,
        "parent_experiment": None,
        "notes": None,
        "error_message": None,
        "error_detail": None,
        "metrics_summary": {},
        "data": {},
        "artifacts": [],
        "sweep": None,
        "result": None,
    }
    record.update(fields)
    path = repo.path / "experiments" / f"{run_id}.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    return run_id


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a hash of its bytes and its mtime: proof of no writes.

    The SQLite index's WAL files are left out: the tracker's background threads (in the test's
    own process) may still checkpoint them; the viewer never opens the index.
    """
    out = {}
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            if name.startswith("index.sqlite"):
                continue
            path = Path(dirpath) / name
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[str(path.relative_to(folder))] = f"{digest}:{path.stat().st_mtime_ns}"
    return out
