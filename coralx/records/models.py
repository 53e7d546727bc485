"""The pydantic models of an experiment record, as stored in ``experiments/<id>.json``.

The record is the source of truth for a run; the SQLite index is derived from it. Every record
carries ``schema_version``; a record written by a newer coralx is refused with a clear error
rather than half-read.

>>> record = ExperimentRecord(experiment_id=new_experiment_id(), name="bert")
>>> ExperimentRecord.from_json(record.to_json()) == record
True
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import UnsupportedFormat

__all__ = [
    "SCHEMA_VERSION",
    "ArtifactRef",
    "CodeInfo",
    "ExperimentRecord",
    "MetricSummary",
    "SweepInfo",
    "utcnow",
]

SCHEMA_VERSION = 1

Status = Literal["pending", "running", "completed", "failed", "cancelled"]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (every time coralx stores is UTC)."""
    return datetime.now(UTC)


class _Model(BaseModel):
    # NaN and infinities are kept as logged; JSON has no literal for them, so they are written
    # as the strings "NaN", "Infinity", "-Infinity", which every JSON reader accepts and Python's
    # float() reads back. Unknown keys from a newer minor writer are kept, not dropped.
    model_config = ConfigDict(ser_json_inf_nan="strings", extra="allow")


class MetricSummary(_Model):
    """A running summary of one metric, kept as values are logged so queries never read
    journals. ``min``/``max`` (and their steps) are over finite values only: NaN and
    infinities are kept in the history and in ``last`` but never win a best-of."""

    last: float | None = None
    last_step: int | None = None
    min: float | None = None
    max: float | None = None
    count: int = 0
    best_step_min: int | None = None
    best_step_max: int | None = None


class CodeInfo(_Model):
    """The user's code when the run started: git HEAD, branch, dirty flag, and the id of a git
    tree in ``.coralx`` holding the working tree as it was when it was dirty."""

    commit: str | None = None
    branch: str | None = None
    dirty: bool | None = None
    snapshot: str | None = None
    root: str | None = None
    skipped: list[str] = Field(default_factory=list)


class ArtifactRef(_Model):
    """An artifact stored as a content-addressed blob."""

    name: str
    blob: str
    size: int
    media_type: str | None = None
    kind: str = "file"
    step: int | None = None


class SweepInfo(_Model):
    """Where a run sits in a sweep."""

    sweep_id: str
    #: The sweep's experiment; the run's name is ``<experiment>/<config_name>``.
    experiment: str | None = None
    config_name: str | None = None
    config_hash: str | None = None
    position: list[int] = Field(default_factory=list)
    repeat: int = 0


class ExperimentRecord(_Model):
    """One run: what it was, how it went, what it produced, and where its code and weights are."""

    schema_version: int = SCHEMA_VERSION
    experiment_id: str
    name: str
    description: str | None = None
    status: Status = "pending"
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    commit_hash: str | None = None
    weight_commits: list[str] = Field(default_factory=list)
    code: CodeInfo = Field(default_factory=CodeInfo)
    branch: str | None = None
    parent_experiment: str | None = None
    notes: str | None = None
    error_message: str | None = None
    error_detail: str | None = None
    host: str | None = None
    pid: int | None = None
    pid_start: int | None = None
    lease_until: float | None = None
    metrics_summary: dict[str, MetricSummary] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    artifacts: list[ArtifactRef] = Field(default_factory=list)
    sweep: SweepInfo | None = None
    result: Any = None
    # The blob id of the environment the run ran in (coralx.environment), stored once.
    environment: str | None = None
    revision: int = 0

    def to_json(self) -> str:
        return self.model_dump_json(indent=1)

    def index_view(self) -> dict[str, Any]:
        """The fields the index reads (see ``Index.upsert``), taken straight from the model:
        the same values as in :meth:`to_dict`, without serialising the whole record again."""
        return {
            "experiment_id": self.experiment_id,
            "name": self.name,
            "status": self.status,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "branch": self.branch,
            "code": {"commit": self.code.commit},
            "parent_experiment": self.parent_experiment,
            "sweep": {"sweep_id": self.sweep.sweep_id} if self.sweep is not None else None,
            "host": self.host,
            "pid": self.pid,
            "pid_start": self.pid_start,
            "lease_until": self.lease_until,
            "commit_hash": self.commit_hash,
            # Serialised now: the index writes the row later, from another thread, and the
            # run may change its params meanwhile.
            "params_json": json.dumps(self.params, sort_keys=True),
            "revision": self.revision,
            "tags": list(self.tags),
            "metrics_summary": {
                name: {"last": s.last, "min": s.min, "max": s.max, "count": s.count}
                for name, s in self.metrics_summary.items()
            },
        }

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON-ready data (datetimes as ISO strings)."""
        data: dict[str, Any] = self.model_dump(mode="json")
        return data

    @classmethod
    def from_json(cls, text: str | bytes) -> ExperimentRecord:
        return cls.from_dict(_loads(text))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentRecord:
        version = data.get("schema_version", SCHEMA_VERSION)
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise UnsupportedFormat(
                f"experiment record {data.get('experiment_id')}", version, SCHEMA_VERSION
            )
        return cls.model_validate(data)


def _loads(text: str | bytes) -> dict[str, Any]:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("an experiment record must be a JSON object")
    return data
