"""Import MLflow runs into a coralx store: ``coralx import mlflow SOURCE``.

Each MLflow run becomes a finished coralx run:

* name, params (MLflow keeps them as strings: so does the import), status
  (FINISHED/FAILED/KILLED become completed/failed/cancelled; a run still RUNNING in MLflow
  is recorded as failed, saying so), start and end times, description and notes;
* its tags: all of them under ``data["mlflow"]["tags"]``, the user's own (not ``mlflow.*``)
  also as coralx tags ``key=value``, with ``mlflow`` and ``mlflow:<experiment name>``;
* every metric's full history, with its steps and timestamps;
* its parent (``mlflow.parentRunId``) and git commit (``mlflow.source.git.commit``);
* its artifacts as content-addressed blobs. A ``.safetensors`` file becomes a weight
  commit (the files of one folder together, on branch ``mlflow/<experiment id>``) linked to
  the run; a pickled file (``.pt``, ``.pkl``, ...) is kept as a blob and never loaded.

A run's coralx id is derived from its MLflow id (the start time's milliseconds, then 8 hex
digits of the BLAKE3 of the MLflow id), so importing again finds it and adds nothing. A run is
written whole or not at all: its record, written last, is what makes it exist.

>>> summary = import_mlflow(repo, "sqlite:///mlflow.db")
>>> summary.imported, summary.skipped
(12, 0)
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ..errors import InvalidValue
from .mlflow_store import MlflowRun, open_source

if TYPE_CHECKING:
    from ..experiments import ExperimentTracker
    from ..records.models import ArtifactRef, ExperimentRecord
    from ..repository import Repository

__all__ = ["PICKLE_SUFFIXES", "ImportSummary", "import_mlflow", "mlflow_experiment_id"]

PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".bin"})
_STATUS = {"FINISHED": "completed", "FAILED": "failed", "KILLED": "cancelled"}


@dataclass
class ImportSummary:
    """What an import did; ``to_dict`` for ``--json``."""

    source: str
    runs: int = 0
    imported: int = 0
    skipped: int = 0
    deleted: int = 0
    metrics: int = 0
    artifacts: int = 0
    pickles: int = 0
    weight_commits: int = 0
    remote_artifacts: int = 0
    experiment_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mlflow_experiment_id(run: MlflowRun) -> str:
    """The coralx id an MLflow run gets: time-sortable like every id, and the same at every
    import (``<12 hex digits of start ms><8 hex digits of BLAKE3(run id)>``)."""
    from blake3 import blake3

    ms = max(0, int(run.start_time or 0))
    return f"{ms:012x}{blake3(run.run_id.encode('utf-8')).hexdigest()[:8]}"


def import_mlflow(
    repo: Repository,
    source: str | os.PathLike[str],
    *,
    include_deleted: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Import every run of an MLflow FileStore folder or SQLite database into ``repo``.

    Runs already imported are skipped; deleted runs are skipped unless ``include_deleted``.
    ``progress(done, total)`` is called after each run. The source is checked whole (it
    exists, is one of the two formats, has a known schema) before anything is written.
    """
    from ..experiments import ExperimentTracker

    src = open_source(source)
    summary = ImportSummary(source=src.location)
    tracker = ExperimentTracker(repo, capture_code=False)
    try:
        ids = src.run_ids()
        summary.runs = len(ids)
        known: dict[str, str] = {}
        in_source = set(ids)

        def coralx_id(run_id: str) -> str | None:
            # A parent usually starts (and is imported) first; else it is read to name it.
            if run_id not in known and run_id in in_source:
                known[run_id] = mlflow_experiment_id(src.read_run(run_id))
            return known.get(run_id)

        for done, run_id in enumerate(ids, 1):
            run = src.read_run(run_id)
            eid = known[run.run_id] = mlflow_experiment_id(run)
            if run.lifecycle_stage == "deleted" and not include_deleted:
                summary.deleted += 1
            elif _already_imported(tracker, eid, run):
                summary.skipped += 1
            else:
                _import_run(repo, tracker, run, summary, coralx_id)
            if progress is not None:
                progress(done, len(ids))
    finally:
        src.close()
    tracker.flush(wait=True)
    return summary


def _already_imported(tracker: ExperimentTracker, eid: str, run: MlflowRun) -> bool:
    if not tracker.exists(eid):
        return False
    data = tracker.get_or_raise(eid).data
    if (data.get("mlflow") or {}).get("run_id") != run.run_id:
        raise InvalidValue(
            f"experiment {eid} exists but was not imported from MLflow run {run.run_id}; "
            "import into another store"
        )
    return True


def _import_run(
    repo: Repository,
    tracker: ExperimentTracker,
    run: MlflowRun,
    summary: ImportSummary,
    coralx_id: Callable[[str], str | None],
) -> None:
    eid = mlflow_experiment_id(run)
    artifacts, commits, pickles = _store_artifacts(repo, run, eid)
    record = _record(run, eid, artifacts, commits, coralx_id)
    metrics = [(k, v, s, t / 1000.0) for k, v, s, t in run.metrics]
    tracker.record_run(record, metrics)
    summary.imported += 1
    summary.metrics += len(metrics)
    summary.artifacts += len(artifacts)
    summary.pickles += pickles
    summary.weight_commits += len(commits)
    if urlparse(run.artifact_uri).scheme not in ("", "file"):
        summary.remote_artifacts += 1  # s3://, mlflow-artifacts:/ ...: not read
    summary.experiment_ids.append(eid)


def _record(
    run: MlflowRun,
    eid: str,
    artifacts: list[ArtifactRef],
    commits: list[str],
    coralx_id: Callable[[str], str | None],
) -> ExperimentRecord:
    from ..records.models import CodeInfo, ExperimentRecord

    tags = run.tags
    status = _STATUS.get(run.status, "failed")
    parent = tags.get("mlflow.parentRunId")
    user_tags = [f"{k}={v}" for k, v in sorted(tags.items()) if not k.startswith("mlflow.")]
    start = _time(run.start_time)
    return ExperimentRecord(
        experiment_id=eid,
        name=run.name,
        description=tags.get("mlflow.note.content"),
        status=status,  # type: ignore[arg-type]
        created_at=start or datetime.now(UTC),
        started_at=start,
        ended_at=_time(run.end_time),
        params=dict(run.params),
        tags=["mlflow", f"mlflow:{run.experiment_name}", *user_tags],
        parent_experiment=coralx_id(parent) if parent else None,
        code=CodeInfo(
            commit=tags.get("mlflow.source.git.commit"),
            branch=tags.get("mlflow.source.git.branch"),
        ),
        branch=tags.get("mlflow.source.git.branch"),
        error_message=(
            None if status != "failed" else f"the run was {run.status} in MLflow when imported"
        ),
        commit_hash=commits[-1] if commits else None,
        weight_commits=commits,
        artifacts=artifacts,
        data={
            "mlflow": {
                "run_id": run.run_id,
                "experiment_id": run.experiment_id,
                "experiment_name": run.experiment_name,
                "status": run.status,
                "lifecycle_stage": run.lifecycle_stage,
                "artifact_uri": run.artifact_uri,
                "user": run.user,
                "tags": dict(tags),
            }
        },
    )


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000.0, UTC)


# -- artifacts ----------------------------------------------------------------------------------


def _store_artifacts(
    repo: Repository, run: MlflowRun, eid: str
) -> tuple[list[ArtifactRef], list[str], int]:
    """Blobs for the run's files, weight commits for its safetensors files, and the number
    of pickled files kept (as blobs, unread)."""
    from ..records.blobs import BlobStore
    from ..records.models import ArtifactRef

    folder = run.artifact_dir
    if folder is None:
        return [], [], 0
    blobs = BlobStore(repo)
    refs: list[ArtifactRef] = []
    weights: dict[Path, list[Path]] = {}
    pickles = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(folder).as_posix()
        suffix = path.suffix.lower()
        if suffix == ".safetensors":
            weights.setdefault(path.parent, []).append(path)
            continue
        kind = "pickle" if suffix in PICKLE_SUFFIXES else "file"
        pickles += kind == "pickle"
        media = "application/octet-stream" if kind == "pickle" else mimetypes.guess_type(rel)[0]
        raw = path.read_bytes()
        refs.append(
            ArtifactRef(name=rel, blob=blobs.put(raw), size=len(raw), media_type=media, kind=kind)
        )
    commits = [
        _commit_weights(repo, run, eid, files, folder) for _dir, files in sorted(weights.items())
    ]
    return refs, commits, pickles


def _commit_weights(
    repo: Repository, run: MlflowRun, eid: str, files: list[Path], root: Path
) -> str:
    for path in files:
        repo.add_file(path)
    where = files[0].parent.relative_to(root).as_posix()
    message = f"mlflow run {run.name} ({run.run_id}): {where if where != '.' else 'artifacts'}"
    commit = repo.commit(message, branch=_branch(run.experiment_id), experiment_id=eid)
    return commit.commit_hash


def _branch(experiment_id: str) -> str:
    """``mlflow/<experiment id>``; an id git cannot take as a ref name is hashed instead."""
    from blake3 import blake3

    from ..errors import InvalidName
    from ..ids import check_ref_name

    try:
        return check_ref_name(f"mlflow/{experiment_id}")
    except InvalidName:
        return f"mlflow/{blake3(experiment_id.encode('utf-8')).hexdigest()[:12]}"
