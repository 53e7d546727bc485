"""The sweep record, ``.coralx/sweeps/<sweep_id>.json``: the plan of a sweep (its configurations
in shape), every attempt made at each of them, and the report's verdict.

Each configuration's run is an experiment record (the source of truth for that run); the sweep
record is the sweep runner's own journal, written only by the process running the sweep (under
``.coralx/sweeps/<sweep_id>.lock``), atomically, so a crash leaves the previous version whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._fs import FileLock, atomic_write
from ..errors import InvalidName, LockTimeout, StoreCorrupted, SweepBusy, SweepNotFound
from ..ids import check_experiment_id, is_hex

if TYPE_CHECKING:
    from ..repository import Repository

__all__ = ["Attempt", "SweepRecord", "find_sweep", "list_sweeps", "sweep_lock", "sweeps_dir"]

SCHEMA_VERSION = 1
FINAL = ("completed", "failed", "cancelled")


def now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class Attempt:
    """One run of one configuration (an experiment record of the sweep)."""

    experiment_id: str
    config_hash: str
    config_name: str
    position: list[int]
    status: str = "pending"
    parent_experiment: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    started_at: str | None = None
    ended_at: str | None = None
    duration: float | None = None
    #: What the run merged into the setup context: replayed when its result is reused.
    context_update: dict[str, Any] | None = None


@dataclass
class SweepRecord:
    sweep_id: str
    name: str
    function: str = ""
    script: str | None = None
    status: str = "running"
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)
    shape: list[int] = field(default_factory=list)
    executor: str = "subprocess"
    workers: int = 1
    testing: bool = False
    metric: str | None = None
    mode: str = "min"
    #: The base seed of configurations without their own ``seed`` (``sweeps.seeding``).
    seed: int | None = None
    context: dict[str, Any] = field(default_factory=dict)
    configs: list[dict[str, Any]] = field(default_factory=list)
    runs: list[Attempt] = field(default_factory=list)
    verdict: dict[str, Any] | None = None
    #: A name the user gave this sweep (pyexp's ``--timestamp``); None for coralx's own.
    label: str | None = None
    schema_version: int = SCHEMA_VERSION

    # -- queries ---------------------------------------------------------------------------------

    def attempts(self, config_hash: str) -> list[Attempt]:
        return [a for a in self.runs if a.config_hash == config_hash]

    def latest(self, config_hash: str) -> Attempt | None:
        found = self.attempts(config_hash)
        return found[-1] if found else None

    def attempt(self, experiment_id: str) -> Attempt | None:
        for a in self.runs:
            if a.experiment_id == experiment_id:
                return a
        return None

    def counts(self) -> dict[str, int]:
        """Configurations of the current plan by the status of their latest attempt."""
        out: dict[str, int] = {}
        for config in self.configs:
            latest = self.latest(config["config_hash"])
            status = latest.status if latest else "not run"
            out[status] = out.get(status, 0) + 1
        return out

    # -- storage ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepRecord:
        data = dict(data)
        data["runs"] = [Attempt(**a) for a in data.get("runs", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, repo: Repository) -> None:
        self.updated_at = now()
        folder = sweeps_dir(repo)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / f"{self.sweep_id}.json", json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, repo: Repository, sweep_id: str) -> SweepRecord:
        check_experiment_id(sweep_id)  # same shape as an experiment id: safe in a path
        path = sweeps_dir(repo) / f"{sweep_id}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SweepNotFound(sweep_id) from None
        except ValueError as exc:
            raise StoreCorrupted(f"sweep record {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def sweeps_dir(repo: Repository) -> Path:
    return repo.path / "sweeps"


def sweep_dir(repo: Repository, sweep_id: str) -> Path:
    """Where a sweep keeps its runs' logs and output folders."""
    return sweeps_dir(repo) / check_experiment_id(sweep_id)


def iter_sweeps(repo: Repository) -> Iterator[SweepRecord]:
    folder = sweeps_dir(repo)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.json")):
        if is_hex(path.stem) and len(path.stem) == 20:
            yield SweepRecord.load(repo, path.stem)


def list_sweeps(repo: Repository, name: str | None = None) -> list[SweepRecord]:
    """Every sweep, newest first; only those of experiment ``name`` when given."""
    sweeps = [s for s in iter_sweeps(repo) if name is None or s.name == name]
    return sorted(sweeps, key=lambda s: s.sweep_id, reverse=True)


def find_sweep(repo: Repository, id_or_prefix: str) -> SweepRecord:
    """The sweep with this id or unambiguous id prefix; :class:`SweepNotFound` otherwise."""
    text = id_or_prefix.strip().lower()
    if not text or not is_hex(text) or len(text) > 20:
        raise InvalidName("sweep id", id_or_prefix, "expected hex digits (an id or its prefix)")
    if len(text) == 20:
        return SweepRecord.load(repo, text)
    folder = sweeps_dir(repo)
    matches = [p.stem for p in folder.glob(f"{text}*.json")] if folder.is_dir() else []
    if not matches:
        raise SweepNotFound(id_or_prefix)
    if len(matches) > 1:
        from ..errors import AmbiguousRevision

        raise AmbiguousRevision(id_or_prefix, matches, kind="sweep id")
    return SweepRecord.load(repo, matches[0])


def sweep_lock(repo: Repository, sweep_id: str) -> FileLock:
    """A held lock: one process runs a sweep at a time. Raises :class:`SweepBusy`."""
    folder = sweeps_dir(repo)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / f"{check_experiment_id(sweep_id)}.lock", timeout=0.2)
    try:
        lock.acquire()
    except LockTimeout:
        raise SweepBusy(sweep_id) from None
    return lock
