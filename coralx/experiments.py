"""Experiment tracking: runs, their parameters and metrics, linked to code and weights.

>>> from coralx import Repository
>>> from coralx.experiments import ExperimentTracker
>>> repo = Repository("./checkpoints", init=True)
>>> tracker = ExperimentTracker(repo)
>>> with tracker.start("resnet", params={"lr": 0.01}, tags=["baseline"]) as exp:
...     for step in range(100):
...         tracker.log("loss", 1.0 / (step + 1), step=step)
>>> tracker.find_best("loss", mode="min", limit=1)[0]["best_value"]
0.01

``tracker.log`` only appends to an in-memory buffer; a background thread writes the buffer to
the run's journal at least every half second (and when the run ends, or the process exits),
keeps a running summary per metric, and renews the run's lease. A run whose process died is
marked FAILED by the next reader. See ``docs/architecture.md``, "Experiment records".
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import json
import math
import os
import sys
import time
import traceback
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import (
    CoralxError,
    ExperimentAlreadyRunning,
    ExperimentNotFound,
    InvalidName,
    InvalidValue,
    NoActiveExperiment,
)
from .identity import hostname
from .ids import check_experiment_id, new_experiment_id
from .records import query as q
from .records.checks import (
    STEP_MAX,
    STEP_MIN,
    as_float,
    as_step,
    check_json,
    check_metric_name,
    check_tags,
)
from .records.journal import NO_STEP
from .records.live import LiveRun, flusher, own_start_time
from .records.store import LEASE_SECONDS, RecordStore
from .records.sync import syncer

if TYPE_CHECKING:
    from .graph import WeightCommit
    from .records.models import ExperimentRecord
    from .repository import Repository

__all__ = [
    "Experiment",
    "ExperimentMetric",
    "ExperimentStatus",
    "ExperimentTracker",
    "capture_code",
]


class ExperimentStatus(StrEnum):
    """Where a run is in its life. The values are the lowercase strings stored in records."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _dt(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


@dataclass
class ExperimentMetric:
    """One logged value of a metric."""

    name: str
    value: float
    step: int | None = None
    timestamp: datetime = field(default_factory=_utcnow)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "step": self.step,
            "timestamp": self.timestamp.isoformat(),
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentMetric:
        return cls(
            name=data["name"],
            value=float(data["value"]),
            step=data.get("step"),
            timestamp=_dt(data.get("timestamp")) or _utcnow(),
            metadata=dict(data.get("metadata") or {}),
        )


class _LazyMetrics:
    """The ``metrics`` field of an :class:`Experiment`: a plain list, read from the run's
    journal the first time it is used, so listing thousands of runs reads no journals."""

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return _UNLOADED
        value = obj.__dict__.get("_metrics", _UNLOADED)
        if value is _UNLOADED:
            value = obj._load_metrics()
            if obj._live is None:
                obj.__dict__["_metrics"] = value
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__["_metrics"] = value


class _Unloaded:
    """Marks metrics not read yet; never seen by users."""

    def __repr__(self) -> str:
        return "<not loaded>"


_UNLOADED: Any = _Unloaded()


@dataclass(eq=False)
class Experiment:
    """One run: its parameters, tags, metric history, code and weights.

    >>> exp = tracker.get("0194c2")          # an id or an unambiguous prefix
    >>> exp.get_best_metric("val_loss", mode="min").value
    0.231
    """

    experiment_id: str
    name: str
    description: str | None = None
    status: ExperimentStatus = ExperimentStatus.PENDING
    created_at: datetime = field(default_factory=_utcnow)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    metrics: list[ExperimentMetric] = _LazyMetrics()  # type: ignore[assignment]
    params: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    commit_hash: str | None = None
    branch: str | None = None
    parent_experiment: str | None = None
    notes: str | None = None
    # Beyond the seed: the rest of the record.
    weight_commits: list[str] = field(default_factory=list)
    code: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    sweep: dict[str, Any] | None = None
    result: Any = None
    error_message: str | None = None
    error_detail: str | None = None
    metrics_summary: dict[str, dict[str, Any]] = field(default_factory=dict)
    host: str | None = None
    pid: int | None = None
    environment: str | None = None
    _journal: Path | None = field(default=None, repr=False, compare=False)
    _live: Any = field(default=None, repr=False, compare=False)
    _tracker: Any = field(default=None, repr=False, compare=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Experiment):
            return NotImplemented
        return self is other or self.to_dict(metrics=False) == other.to_dict(metrics=False)

    __hash__ = None  # type: ignore[assignment]

    # -- metrics ------------------------------------------------------------------------------

    def _load_metrics(self) -> list[ExperimentMetric]:
        if self._live is not None:
            self._live.flush()
        if self._journal is None:
            return []
        cols = self._read_journal()
        names = cols.names
        return [
            _metric(names.get(int(i), f"#{i}"), v, s, t)
            for i, v, s, t in zip(
                cols.ids.tolist(), cols.values.tolist(), cols.steps.tolist(), cols.times.tolist()
            )
        ]

    def _read_journal(self) -> Any:
        """The run's journal, read with a :class:`JournalDamaged` warning if frames of it are
        damaged (naming the metrics that lost values, from the record's counts)."""
        from .records.journal import read_checked

        assert self._journal is not None
        counts = {k: int(v.get("count") or 0) for k, v in self.metrics_summary.items()}
        return read_checked(self._journal, counts)

    def _loaded(self) -> bool:
        return self.__dict__.get("_metrics", _UNLOADED) is not _UNLOADED

    def get_metric_history(self, name: str) -> list[ExperimentMetric]:
        """Every value of metric ``name``, in the order logged."""
        if self._loaded() or self._journal is None or self._live is not None:
            return [m for m in self.metrics if m.name == name]
        values, steps, times = self._read_journal().select(name)
        return [
            _metric(name, v, s, t)
            for v, s, t in zip(values.tolist(), steps.tolist(), times.tolist())
        ]

    def get_latest_metric(self, name: str) -> ExperimentMetric | None:
        """The last value logged of ``name`` (None if it was never logged)."""
        history = self.get_metric_history(name)
        return history[-1] if history else None

    def get_best_metric(self, name: str, mode: str = "min") -> ExperimentMetric | None:
        """The lowest (``mode="min"``) or highest (``"max"``) finite value of ``name``; the
        earliest wins a tie. NaN and infinities never win; None if there is no finite value."""
        _check_mode(mode)
        best: ExperimentMetric | None = None
        for m in self.get_metric_history(name):
            if not math.isfinite(m.value):
                continue
            if best is None or (m.value < best.value if mode == "min" else m.value > best.value):
                best = m
        return best

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (to now while running); None if it never started."""
        if self.started_at is None:
            return None
        end = self.ended_at or _utcnow()
        return (end - self.started_at).total_seconds()

    @property
    def metric_names(self) -> list[str]:
        """The names of the metrics logged, sorted."""
        if self._loaded() or self._live is not None or not self.metrics_summary:
            return sorted({m.name for m in self.metrics})
        return sorted(self.metrics_summary)

    # -- a run as a context manager ---------------------------------------------------------

    def __enter__(self) -> Experiment:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        tracker = self._tracker
        if tracker is None or tracker.current is not self:
            return  # ended inside the block, or not a tracked run
        if exc is None:
            tracker.end()
        elif isinstance(exc, KeyboardInterrupt):
            tracker.cancel()
        else:
            detail = "".join(traceback.format_exception(exc_type, exc, tb))
            tracker.fail(str(exc) or exc_type.__name__, error_detail=detail)

    # -- serialisation ------------------------------------------------------------------------

    def to_dict(self, metrics: bool = True) -> dict[str, Any]:
        """The run as JSON-ready data (with its full metric history unless ``metrics=False``)."""
        out: dict[str, Any] = {
            "experiment_id": self.experiment_id,
            "name": self.name,
            "description": self.description,
            "status": ExperimentStatus(self.status).value,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "params": self.params,
            "tags": list(self.tags),
            "commit_hash": self.commit_hash,
            "branch": self.branch,
            "parent_experiment": self.parent_experiment,
            "notes": self.notes,
            "weight_commits": list(self.weight_commits),
            "code": dict(self.code),
            "data": self.data,
            "artifacts": list(self.artifacts),
            "sweep": self.sweep,
            "result": self.result,
            "error_message": self.error_message,
            "error_detail": self.error_detail,
            "metrics_summary": self.metrics_summary,
            "host": self.host,
            "pid": self.pid,
            "environment": self.environment,
        }
        if metrics:
            out["metrics"] = [m.to_dict() for m in self.metrics]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], journal: Path | None = None) -> Experiment:
        """An Experiment from :meth:`to_dict` output or a stored record."""
        exp = cls(
            experiment_id=data["experiment_id"],
            name=data["name"],
            description=data.get("description"),
            status=ExperimentStatus(data.get("status") or "pending"),
            created_at=_dt(data.get("created_at")) or _utcnow(),
            started_at=_dt(data.get("started_at")),
            ended_at=_dt(data.get("ended_at")),
            params=dict(data.get("params") or {}),
            tags=list(data.get("tags") or []),
            commit_hash=data.get("commit_hash"),
            branch=data.get("branch"),
            parent_experiment=data.get("parent_experiment"),
            notes=data.get("notes"),
            weight_commits=list(data.get("weight_commits") or []),
            code=dict(data.get("code") or {}),
            data=dict(data.get("data") or {}),
            artifacts=list(data.get("artifacts") or []),
            sweep=data.get("sweep"),
            result=data.get("result"),
            error_message=data.get("error_message"),
            error_detail=data.get("error_detail"),
            metrics_summary={
                k: {key: _jnum(v) for key, v in s.items()}
                for k, s in (data.get("metrics_summary") or {}).items()
            },
            host=data.get("host"),
            pid=data.get("pid"),
            environment=data.get("environment"),
            _journal=journal,
        )
        if "metrics" in data:
            exp.metrics = [ExperimentMetric.from_dict(m) for m in data["metrics"]]
        return exp


def _metric(name: str, value: float, step: int, t: float) -> ExperimentMetric:
    return ExperimentMetric(
        name=name,
        value=value,
        step=None if step == NO_STEP else step,
        timestamp=datetime.fromtimestamp(t, UTC),
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _jnum(value: Any) -> Any:
    """Stored summaries write NaN and infinities as strings; give floats back."""
    return float(value) if isinstance(value, str) else value


def _check_mode(mode: str) -> None:
    if mode not in ("min", "max"):
        raise InvalidValue(f"mode must be 'min' or 'max', not {mode!r}")


def _statuses(status: Any) -> list[str] | None:
    return q.check_statuses(status)


_trackers: weakref.WeakSet[ExperimentTracker] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A forked child does not own its parent's runs: it must neither log to them nor end them.
    flusher.reset_after_fork()
    for tracker in list(_trackers):
        tracker._run = None
        tracker._sampler = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _at_exit() -> None:
    """End runs still open when the interpreter exits, with the reason."""
    exc = getattr(sys, "last_value", None)
    for tracker in list(_trackers):
        run = tracker._run
        if run is None or run.pid != os.getpid():
            continue
        with contextlib.suppress(Exception):
            if isinstance(exc, KeyboardInterrupt):
                tracker.cancel()
            elif exc is not None:
                detail = "".join(traceback.format_exception(exc))
                tracker.fail(f"{type(exc).__name__}: {exc}", error_detail=detail)
            else:
                tracker.fail("the process exited without calling tracker.end()")
    syncer.wait()


atexit.register(_at_exit)


# -- the tracker ----------------------------------------------------------------------------------


def capture_code(repo: Repository) -> dict[str, Any]:
    """The code a run started now would record: the git work tree of the store's folder or
    of the current folder, its HEAD, branch and dirty flag, and (when dirty) a snapshot
    stored in ``repo``. What ``start`` records, for handing to many runs
    (``start(..., code=...)``): a sweep captures it once.

    >>> code = capture_code(repo)
    >>> tracker.start("run", code=code).code["commit"] == code["commit"]
    True
    """
    from .workspace import capture

    try:
        store_git = repo.git
    except Exception:  # no object database to snapshot into: commit and flag only
        store_git = None
    return capture(store_git, repo.root, Path.cwd())


class ExperimentTracker:
    """Records runs in a repository's ``experiments/`` and answers questions about them.

    >>> tracker = ExperimentTracker(repo)
    >>> exp = tracker.start("bert-finetuning", params={"lr": 1e-3}, tags=["bert"])
    >>> tracker.log("loss", 0.5, step=100)
    >>> tracker.end(commit_hash=repo.commit("trained").commit_hash)
    """

    def __init__(
        self,
        repo: Repository,
        *,
        capture_code: bool = True,
        capture_environment: bool = True,
    ) -> None:
        self.repo = repo
        self.capture_code = capture_code
        self.capture_environment = capture_environment
        self._store = RecordStore(repo.path)
        self._run: LiveRun | None = None
        self._sampler: Any = None
        _trackers.add(self)
        closables = getattr(repo, "_closables", None)
        if closables is not None:  # closed with its repository
            closables.add(self)

    def __repr__(self) -> str:
        return f"ExperimentTracker({self.repo!r})"

    def close(self) -> None:
        """Fail a run still active ("closed before tracker.end()"), write what is queued and
        stop the tracker's threads: after this, no thread of the tracker writes into the
        store. The tracker can still be used; it reopens what it needs.

        >>> with ExperimentTracker(repo) as tracker:
        ...     tracker.start("run"); tracker.end()
        """
        run = self._run
        if run is not None and run.pid == os.getpid():
            self.fail("the tracker was closed before tracker.end()")
        self._store.close()

    def __enter__(self) -> ExperimentTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the active run -----------------------------------------------------------------------

    @property
    def current(self) -> Experiment | None:
        """The run being recorded, or None."""
        run = self._run
        return run.experiment if run is not None else None

    @property
    def current_experiment(self) -> Experiment | None:
        """Alias of :attr:`current`."""
        return self.current

    def start(
        self,
        name: str,
        description: str | None = None,
        params: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        *,
        parent_experiment: str | None = None,
        experiment_id: str | None = None,
        sweep: dict[str, Any] | None = None,
        code: Mapping[str, Any] | None = None,
        system_metrics: bool | None = None,
    ) -> Experiment:
        """Start recording a run and make it the active one.

        ``experiment_id`` starts a run whose id was handed out before (by ``resume(...,
        start=False)`` or a sweep runner): a PENDING record with that id is taken over.
        ``sweep`` is stored in the record's ``sweep`` field. ``code`` is the code info
        :func:`capture_code` gave, captured once for many runs of the same code (a sweep):
        it is recorded as given and git is not asked again.

        The environment (:mod:`coralx.environment`: Python, packages, machine, command
        line) is recorded with every run, gathered once per process and stored once.
        ``system_metrics=True`` samples CPU, memory and GPU use on a background thread into
        metrics named ``system/...`` until the run ends; its default is ``[tracker]
        system_metrics`` in the store's ``config.toml`` (off unless set).
        """
        from .records.models import CodeInfo, ExperimentRecord, SweepInfo

        if self._run is not None:
            raise ExperimentAlreadyRunning(self._run.record.experiment_id)
        if not isinstance(name, str) or not name.strip():
            raise InvalidName("experiment", name, "a run needs a non-empty name")
        params_data = check_json(dict(params or {}), "params")
        tag_list = check_tags(tags)
        sweep_info = SweepInfo(**check_json(sweep, "sweep")) if sweep is not None else None
        parent = self._store.resolve(parent_experiment) if parent_experiment else None
        existing = self._pending_record(experiment_id) if experiment_id else None
        now = _utcnow()
        code = dict(code) if code is not None else self._capture_code()
        if existing is not None:
            record = existing
            record.name = name
            record.description = description if description is not None else record.description
            if params is not None:
                record.params = params_data
            record.tags = check_tags([*record.tags, *tag_list])
            record.parent_experiment = parent or record.parent_experiment
            record.sweep = sweep_info or record.sweep
        else:
            record = ExperimentRecord(
                experiment_id=experiment_id or new_experiment_id(),
                name=name,
                description=description,
                params=params_data,
                tags=tag_list,
                parent_experiment=parent,
                sweep=sweep_info,
                created_at=now,
            )
        record.status = "running"
        record.started_at = now
        record.code = CodeInfo(**code)
        record.branch = code.get("branch")
        record.host = hostname()
        record.pid = os.getpid()
        record.pid_start = own_start_time()
        record.lease_until = time.time() + LEASE_SECONDS
        record.environment = self._environment()
        self._store.drain_due()  # the index rows of the runs that ended before this one
        self._store.write(record)
        exp = Experiment(
            experiment_id=record.experiment_id,
            name=record.name,
            _journal=self._store.journal_path(record.experiment_id),
            _tracker=self,
        )
        self._refresh(exp, record)
        run = LiveRun(self._store, record, on_save=lambda rec: self._refresh(exp, rec))
        run.experiment = exp
        exp._live = run
        exp._tracker = self
        self._run = run
        flusher.add(run)
        self._link_commits(record)
        self._start_sampler(run, system_metrics)
        return exp

    def _start_sampler(self, run: LiveRun, wanted: bool | None) -> None:
        settings = self.repo.config.get("tracker") or {}
        if wanted is None:
            wanted = bool(settings.get("system_metrics", False))
        if not wanted:
            return
        from .records.system import DEFAULT_INTERVAL, SystemSampler

        interval = settings.get("system_metrics_interval", DEFAULT_INTERVAL)
        self._sampler = SystemSampler(run, float(interval)).start()

    def _pending_record(self, experiment_id: str) -> ExperimentRecord | None:
        eid = check_experiment_id(experiment_id)
        if not self._store.exists(eid):
            return None
        record = self._store.read(eid)
        if record.status != "pending":
            raise InvalidValue(
                f"experiment {eid} already exists and is {record.status}; only a pending run "
                "can be started by id (resume it to run it again)"
            )
        return record

    def _capture_code(self) -> dict[str, Any]:
        if not self.capture_code:
            return {}
        return capture_code(self.repo)

    def _environment(self) -> str | None:
        if not self.capture_environment:
            return None
        from . import environment

        try:
            return environment.store(self.repo)
        except Exception:  # the environment is context: never a reason for a run to fail
            return None

    def get_environment(self, experiment_id: str) -> dict[str, Any] | None:
        """The environment a run ran in (see :mod:`coralx.environment`), or None when it
        recorded none.

        >>> tracker.get_environment("0194c2")["packages"]["torch"]
        '2.13.0'
        """
        from . import environment

        exp = self.get_or_raise(experiment_id)
        return environment.load(self.repo, exp.environment) if exp.environment else None

    def _store_git(self) -> Any:
        try:
            return self.repo.git
        except Exception:
            return None

    def _active(self, what: str) -> LiveRun:
        run = self._run
        if run is None:
            raise NoActiveExperiment(what)
        return run

    def log(self, name: str, value: float, step: int | None = None) -> None:
        """Log one value of a metric. Cheap: it appends to a buffer written in the background.

        ``value`` may be a Python number, a numpy scalar or a 0-d tensor; NaN and infinities
        are kept as logged. ``step`` is an integer or None.
        """
        # The hot path of a training loop: only checks that cost next to nothing here, the
        # rest happens once per metric name (add_name) or when the buffer is flushed.
        run = self._run
        if run is None:
            raise NoActiveExperiment("log")
        try:
            if name not in run.names:
                run.add_name(name)
        except TypeError:
            check_metric_name(name)
            raise
        if value.__class__ is not float:
            value = as_float(value)
        # An int outside 64 bits would pass the class test and poison the flusher's batch.
        if step.__class__ is not int or not STEP_MIN <= step <= STEP_MAX:
            step = as_step(step)
        run.buffer.append((name, value, step))

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log several metrics at one step. All are checked before any is logged."""
        run = self._active("log")
        checked = []
        known = run.names
        for name, value in metrics.items():
            if name.__class__ is not str or name not in known:  # a known name was checked
                check_metric_name(name)
            checked.append((name, value if value.__class__ is float else as_float(value)))
        stp = as_step(step)
        for name, value in checked:
            if name not in run.names:
                run.add_name(name)
            run.buffer.append((name, value, stp))

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Add or update parameters of the active run."""
        run = self._active("log params")
        data = check_json(dict(params), "params")
        with run.lock:
            run.record.params.update(data)
            run.save(lease=False)

    def add_tags(self, tags: Iterable[str]) -> None:
        """Add tags to the active run."""
        run = self._active("tag")
        new = check_tags(tags)
        with run.lock:
            run.record.tags = check_tags([*run.record.tags, *new])
            run.save(lease=False)

    def set_notes(self, notes: str) -> None:
        """Set the notes of the active run."""
        run = self._active("set notes")
        if not isinstance(notes, str):
            raise InvalidValue(f"notes must be a string, not {type(notes).__name__}")
        with run.lock:
            run.record.notes = notes
            run.save(lease=False)

    def set_data(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON data) in the run's nested ``data`` under a slash key.

        >>> tracker.set_data("eval/squad/f1", 88.1)   # data == {"eval": {"squad": {"f1": 88.1}}}
        """
        run = self._active("set data")
        parts = key.split("/") if isinstance(key, str) else []
        if not parts or any(not p for p in parts):
            raise InvalidName("data key", key, "use non-empty parts separated by '/'")
        checked = check_json(value, f"data {key!r}")
        with run.lock:
            node = run.record.data
            for part in parts[:-1]:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
            node[parts[-1]] = checked
            run.save(lease=False)

    def log_artifact(
        self,
        name: str,
        data: bytes | str | os.PathLike[str],
        media_type: str | None = None,
        kind: str = "file",
        step: int | None = None,
    ) -> dict[str, Any]:
        """Store bytes, text, or a file's content as a blob and list it in the run's
        ``artifacts``. Returns the artifact entry."""
        from .records.blobs import BlobStore
        from .records.models import ArtifactRef

        run = self._active("log an artifact")
        if not isinstance(name, str) or not name.strip():
            raise InvalidName("artifact", name, "an artifact needs a non-empty name")
        if isinstance(data, bytes):
            raw = data
        elif isinstance(data, str):
            raw = data.encode("utf-8")
            media_type = media_type or "text/plain"
        else:
            raw = Path(data).read_bytes()
        blob = BlobStore(self.repo).put(raw)
        ref = ArtifactRef(
            name=name,
            blob=blob,
            size=len(raw),
            media_type=media_type,
            kind=kind,
            step=None if step is None else as_step(step),
        )
        with run.lock:
            run.record.artifacts.append(ref)
            run.save(lease=False)
        return ref.model_dump()

    def log_text(self, tag: str, text: str, step: int | None = None) -> dict[str, Any]:
        """Store ``text`` under ``tag`` (at ``step``) in the active run: a content-addressed
        blob listed in its ``artifacts`` with kind ``"text"``; ``coralx ui`` shows it with a
        step slider. Returns the artifact entry.

        >>> tracker.log_text("samples/val", generated, step=epoch)
        """
        from .records import media

        return media.log_text(self, tag, text, step)

    def log_figure(
        self, tag: str, figure: Any, step: int | None = None, interactive: bool = True
    ) -> list[dict[str, Any]]:
        """Store a matplotlib figure (as PNG and SVG) or a plotly figure (as its JSON) under
        ``tag`` in the active run, never as a pickle; the same image logged twice is stored
        once. ``interactive=False`` asks the viewer for a still image. Returns the entries.

        >>> tracker.log_figure("curves", fig, step=epoch, interactive=False)
        """
        from .records import media

        return media.log_figure(self, tag, figure, step, interactive)

    def flush(self, wait: bool = True) -> None:
        """Write buffered values of the active run to its journal now, and the index rows of
        the runs that ended (see ``end()``); with ``wait``, return once they (and every
        record written so far) are on disk."""
        run = self._run
        if run is not None:
            run.flush()
            if run.dirty_summary:
                run.save(lease=False)
        self._store.drain()
        if wait:
            syncer.wait()

    # -- ending -------------------------------------------------------------------------------

    def end(
        self,
        commit_hash: str | None = None,
        result: Any = None,
        *,
        status: ExperimentStatus | str = ExperimentStatus.COMPLETED,
    ) -> Experiment:
        """End the active run (COMPLETED unless ``status`` says otherwise), linking the weight
        commit that came out of it and, for sweeps, the result it returned."""
        if isinstance(commit_hash, ExperimentStatus):  # end(ExperimentStatus.FAILED)
            status = commit_hash
            commit_hash = None
        if commit_hash is not None and not isinstance(commit_hash, str):
            commit_hash = getattr(commit_hash, "commit_hash", None) or str(commit_hash)
        result_data = check_json(result, "result") if result is not None else None
        final = (_statuses(status) or ["completed"])[0]
        if final in ("pending", "running"):
            raise InvalidValue(f"a run cannot end as {final}")
        return self._finish(final, commit_hash=commit_hash, result=result_data)

    def fail(self, error_message: str | None = None, error_detail: str | None = None) -> Experiment:
        """End the active run as FAILED with what went wrong: the message goes to
        ``error_message`` and to the run's ``notes`` (after any notes it had, as in the seed).
        Inside an ``except`` block the traceback is kept as ``error_detail`` unless one is
        given.

        >>> tracker.fail("CUDA out of memory").notes
        'CUDA out of memory'
        """
        if error_detail is None and sys.exc_info()[0] is not None:
            error_detail = traceback.format_exc()
        message = error_message or "failed"
        run = self._active("end as failed")
        notes = run.record.notes
        notes = message if not notes else f"{notes}\n{message}"
        return self._finish("failed", error_message=message, error_detail=error_detail, notes=notes)

    def cancel(self) -> Experiment:
        """End the active run as CANCELLED (stopped by the user)."""
        return self._finish("cancelled")

    def _finish(self, status: str, **fields: Any) -> Experiment:
        run = self._active(f"end as {status}")
        sampler, self._sampler = self._sampler, None
        if sampler is not None:
            sampler.stop()  # joined: its last values go out with the final flush below
        flusher.discard(run)
        try:
            run.flush()
        finally:
            run.journal.close()
        with run.lock:
            rec = run.record
            rec.status = status  # type: ignore[assignment]
            rec.ended_at = _utcnow()
            rec.lease_until = None
            for key, value in fields.items():
                if value is not None:
                    setattr(rec, key, value)
            # Its index row is held, not left to the index thread: once end() returns, no
            # thread of coralx writes into the store (a caller may delete it at once). The
            # next start() writes it, with those of the runs that ended meanwhile.
            run.save(lease=False, hold=True)
            run.closed = True
        self._run = None
        self._unlink_commits()
        exp = run.experiment
        exp._live = None
        exp.__dict__.pop("_metrics", None)
        if run.error is not None:
            raise CoralxError(f"the run was saved, but writing its metrics failed: {run.error}")
        return exp

    # -- weight commits made during a run -----------------------------------------------------

    def _link_commits(self, record: ExperimentRecord) -> None:
        # While the run is active, repo.commit() links new weight commits to it, and the
        # listener adds each to the run's weight_commits.
        context = self.repo.commit_context
        context.clear()
        context["experiment_id"] = record.experiment_id
        if record.code.commit:
            context["code_commit"] = record.code.commit
        if record.code.branch:
            context["code_branch"] = record.code.branch
        if record.code.root:
            context["work_tree"] = record.code.root  # its git identity signs the commits
        base = self._run_base(record)
        if base:
            context["run_base"] = base  # where the run's line of weight commits starts
        if self._on_commit not in self.repo.commit_listeners:
            self.repo.commit_listeners.append(self._on_commit)

    def _run_base(self, record: ExperimentRecord) -> str | None:
        """The parent of a run's first weight commit: a resumed run continues its parent
        run's line; a new run starts from the head of the branch it started on."""
        from .graph import peek_ref

        parent = record.parent_experiment
        if parent:
            line = peek_ref(self.repo.path, f"refs/runs/{parent}")
            if line:
                return line
            with contextlib.suppress(CoralxError):
                old = self._store.read(parent)
                if old.commit_hash or old.weight_commits:
                    return old.commit_hash or old.weight_commits[-1]
        return peek_ref(self.repo.path)

    def _unlink_commits(self) -> None:
        self.repo.commit_context.clear()
        with contextlib.suppress(ValueError):
            self.repo.commit_listeners.remove(self._on_commit)

    def _on_commit(self, commit: WeightCommit) -> None:
        run = self._run
        if run is None or commit.experiment_id != run.record.experiment_id:
            return  # a commit linked to another run (or to none) is not this run's
        with run.lock:
            run.record.weight_commits.append(str(commit.commit_hash))
            # The run's commit is its latest until end() names another (a best checkpoint):
            # a run that fails or is killed after committing still names its weights.
            run.record.commit_hash = str(commit.commit_hash)
            run.save(lease=False)

    # -- reading ------------------------------------------------------------------------------

    def _experiment(self, data: dict[str, Any]) -> Experiment:
        eid = data["experiment_id"]
        exp = Experiment.from_dict(data, journal=self._store.journal_path(eid))
        exp._tracker = self
        return exp

    def _refresh(self, exp: Experiment, record: ExperimentRecord) -> None:
        """Copy a record's fields onto the Experiment a user holds (cheaply: this runs at
        every write of a live run's record)."""
        exp.name = record.name
        exp.description = record.description
        exp.status = ExperimentStatus(record.status)
        exp.created_at = record.created_at
        exp.started_at = record.started_at
        exp.ended_at = record.ended_at
        exp.params = dict(record.params)
        exp.tags = list(record.tags)
        exp.commit_hash = record.commit_hash
        exp.branch = record.branch
        exp.parent_experiment = record.parent_experiment
        exp.notes = record.notes
        exp.weight_commits = list(record.weight_commits)
        exp.code = record.code.model_dump()
        exp.data = dict(record.data)
        exp.artifacts = [a.model_dump() for a in record.artifacts]
        exp.sweep = record.sweep.model_dump() if record.sweep is not None else None
        exp.result = record.result
        exp.error_message = record.error_message
        exp.error_detail = record.error_detail
        exp.metrics_summary = {k: v.model_dump() for k, v in record.metrics_summary.items()}
        exp.host = record.host
        exp.pid = record.pid
        exp.environment = record.environment

    def _ready(self) -> None:
        """Before answering a query: index what the index misses, mark dead runs FAILED."""
        self._store.ensure_synced()
        self._store.reap()

    def get(self, experiment_id: str) -> Experiment | None:
        """The run with this id or unambiguous id prefix, or None when no run has it (as in
        the seed). An ambiguous prefix raises ``AmbiguousRevision``; :meth:`get_or_raise`
        raises ``ExperimentNotFound`` instead of returning None.

        >>> tracker.get("0194c2").name
        'bert-finetuning'
        >>> tracker.get("ffffffff") is None
        True
        """
        try:
            return self.get_or_raise(experiment_id)
        except ExperimentNotFound:
            return None

    def get_or_raise(self, experiment_id: str) -> Experiment:
        """The run with this id or unambiguous id prefix; ``ExperimentNotFound`` (a
        ``KeyError``) when there is none. What the CLI and every caller that needs the run
        use.

        >>> tracker.get_or_raise("ffffffff")
        Traceback (most recent call last):
        coralx.errors.ExperimentNotFound: no experiment 'ffffffff'; ...
        """
        run = self._run
        if run is not None and run.record.experiment_id == experiment_id:
            return run.experiment
        self._ready()
        eid = self._store.resolve(experiment_id)
        return self._experiment(self._store.read_dict(eid))

    def get_by_name(self, name: str) -> list[Experiment]:
        """Every run with this name, newest first."""
        return self.list(name=_glob_escape(name))

    def list(
        self,
        status: ExperimentStatus | str | Sequence[ExperimentStatus | str] | None = None,
        tags: Sequence[str] | None = None,
        branch: str | None = None,
        limit: int | None = None,
        *,
        where: str | None = None,
        sort: str | Sequence[str] | None = None,
        offset: int = 0,
        name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags_match: str = "all",
        since: datetime | float | str | None = None,
        sweep_id: str | None = None,
        parent: str | None = None,
        ancestor_of: str | None = None,
        sort_by: str | None = None,
        mode: str = "min",
    ) -> list[Experiment]:
        """Runs matching ``where`` and every keyword filter given, newest first or in the
        order of ``sort``.

        ``where`` is a filter string (``docs/cli.md``, "Filters"):
        ``"params.lr < 1e-3 and metrics.val_loss.min <= 0.3 and tags.bert"``. ``sort`` takes
        one key or several (``["-metrics.acc.max", "params.lr"]``); ``sort_by`` with ``mode``
        is the older form (the best value of one metric). ``tags`` keeps runs with all of them
        (``tags_match="any"``: with any); ``name`` is a glob (``"bert-*"``); ``params`` keeps
        runs whose params equal these values; ``ancestor_of`` keeps runs whose code commit is
        that git revision or an ancestor.

        >>> tracker.list(where="tags.bert and status = 'completed'", sort="val_loss", limit=5)
        """
        flt = self.query_filter(
            where, status, tags, branch, name, params, tags_match, since, sweep_id, parent,
            ancestor_of,
        )  # fmt: skip
        keys = self._sort_keys(sort, sort_by, mode)
        rows = self._store.index.select(flt, sort=keys, limit=limit, offset=offset)
        return [self._experiment(json.loads(r[0])) for r in rows]

    def list_records(
        self,
        where: str | None = None,
        *,
        sort: str | Sequence[str] | None = None,
        limit: int | None = None,
        **keywords: Any,
    ) -> builtins.list[dict[str, Any]]:
        """:meth:`list` as the stored record dicts (no :class:`Experiment` objects): what the
        CLI prints and :meth:`to_dataframe` tabulates."""
        flt = self.query_filter(where, **keywords)
        rows = self._store.index.select(flt, sort=self._sort_keys(sort, None, "min"), limit=limit)
        return [json.loads(r[0]) for r in rows]

    @staticmethod
    def _sort_keys(sort: Any, sort_by: str | None, mode: str) -> builtins.list[q.SortKey]:
        keys = q.parse_sort(sort)
        if sort_by is not None:
            _check_mode(mode)
            keys.append(q.SortKey(q.Field("metric", sort_by, mode), mode == "max"))
        return keys

    def query_filter(
        self,
        where: str | None = None,
        status: Any = None,
        tags: Sequence[str] | None = None,
        branch: str | None = None,
        name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags_match: str = "all",
        since: Any = None,
        sweep_id: str | None = None,
        parent: str | None = None,
        ancestor_of: str | None = None,
    ) -> q.Filter:
        """The :class:`~coralx.records.query.Filter` of a filter string and keyword filters
        (all must hold); the index is brought up to date first."""
        if params is not None and not isinstance(params, Mapping):
            raise InvalidValue(f"params must be a mapping of name to value, not {params!r}")
        parsed = q.parse_filter(where)
        self._ready()
        commits = None
        if ancestor_of is not None:
            from .workspace import ancestors

            commits = ancestors(ancestor_of, self.repo.root, Path.cwd())
        keywords = q.from_keywords(
            status=status,
            tags=check_tags(tags) if tags else None,
            tags_match=tags_match,
            branch=branch,
            name=name,
            params=check_json(dict(params), "params") if params else None,
            since=q.parse_time(since) if since is not None else None,
            sweep_id=sweep_id,
            parent=self._store.resolve(parent) if parent else None,
            code_commits=commits,
        )
        return parsed & keywords

    def find_best(
        self,
        metric: str,
        mode: str = "min",
        status: ExperimentStatus | str | Sequence[ExperimentStatus | str] | None = None,
        tags: Sequence[str] | None = None,
        limit: int | None = 10,
        *,
        where: str | None = None,
        by: str = "best",
        branch: str | None = None,
        name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags_match: str = "all",
        sweep_id: str | None = None,
        ancestor_of: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """The runs with the best ``metric``, best first, as dicts with ``experiment_id``,
        ``name``, ``best_value``, ``step``, ``commit_hash``, ``params``, ``tags``, ``status``.

        Only COMPLETED runs rank unless ``status`` (a status, several, or ``"any"``) or a
        ``status`` test in ``where`` says otherwise: a run that crashed or was killed must
        not be deployed by mistake. ``by="best"`` ranks by the best value of each run's
        history (lowest for ``mode="min"``), ``by="last"`` by the last value logged. NaN and
        infinities never rank.

        >>> tracker.find_best("val_loss", mode="min", where="tags.bert and params.lr < 0.01")
        """
        _check_mode(mode)
        if by not in ("best", "last"):
            raise InvalidValue(f"by must be 'best' or 'last', not {by!r}")
        if isinstance(status, str) and status.lower() in ("any", "all"):
            status = None
        elif status is None and not q.parse_filter(where).mentions("attr", "status"):
            status = ExperimentStatus.COMPLETED
        flt = self.query_filter(
            where, status, tags, branch, name, params, tags_match, None, sweep_id, None,
            ancestor_of,
        )  # fmt: skip
        rows = self._store.index.best(metric, flt, mode=mode, by=by, limit=limit)
        out = []
        for text, value, count in rows:
            rec = json.loads(text)
            summary = rec.get("metrics_summary", {}).get(metric, {})
            step_key = "last_step" if by == "last" else f"best_step_{mode}"
            weight = rec.get("commit_hash") or (rec.get("weight_commits") or [None])[-1]
            out.append(
                {
                    "experiment_id": rec["experiment_id"],
                    "name": rec["name"],
                    "metric": metric,
                    "mode": mode,
                    "best_value": value,
                    "step": summary.get(step_key),
                    "count": count,
                    "commit_hash": weight,
                    "params": rec.get("params", {}),
                    "tags": rec.get("tags", []),
                    "status": rec["status"],
                    "branch": rec.get("branch"),
                    "code_commit": (rec.get("code") or {}).get("commit"),
                    "created_at": rec.get("created_at"),
                }
            )
        return out

    def to_dataframe(
        self,
        where: str | None = None,
        *,
        metrics: str = "summary",
        sort: str | Sequence[str] | None = None,
        limit: int | None = None,
        **keywords: Any,
    ) -> Any:
        """The runs matching ``where`` (and keyword filters, as in :meth:`list`) as a pandas
        DataFrame with MLflow's column names: ``run_id``, ``name``, ``status``,
        ``start_time``, ``end_time``, ``tags``, ``params.<name>`` (nested params by dotted
        path), ``metrics.<name>`` (the last value) and ``metrics.<name>.min``/``.max``/
        ``.count``. With ``metrics="history"``: one row per logged value (``run_id``,
        ``name``, ``key``, ``step``, ``value``, ``timestamp``). Needs ``coralx[pandas]``.

        >>> df = tracker.to_dataframe("tags.bert")
        >>> df.sort_values("metrics.val_loss").head()
        """
        if metrics not in ("summary", "history"):
            raise InvalidValue(f"metrics must be 'summary' or 'history', not {metrics!r}")
        try:
            import pandas as pd
        except ImportError:
            from .errors import MissingDependency

            raise MissingDependency("pandas", "tracker.to_dataframe", "pandas") from None
        records = self.list_records(where, sort=sort, limit=limit, **keywords)
        if metrics == "history":
            return pd.DataFrame(self._history_rows(records), columns=_HISTORY_COLUMNS)
        frame = pd.DataFrame([summary_row(r) for r in records])
        if frame.empty:
            frame = pd.DataFrame(columns=list(_RUN_COLUMNS))
        for col in ("start_time", "end_time", "created"):
            if col in frame:
                frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
        return frame

    def _history_rows(self, records: Iterable[dict[str, Any]]) -> builtins.list[tuple[Any, ...]]:
        from .records.journal import read_journal

        rows: builtins.list[tuple[Any, ...]] = []
        for rec in records:
            eid = rec["experiment_id"]
            cols = read_journal(self._store.journal_path(eid))
            names = cols.names
            for i, v, st, t in zip(
                cols.ids.tolist(), cols.values.tolist(), cols.steps.tolist(), cols.times.tolist()
            ):
                step = None if st == NO_STEP else st
                when = datetime.fromtimestamp(t, UTC)
                rows.append((eid, rec["name"], names.get(int(i), f"#{i}"), step, v, when))
        return rows

    def compare(
        self,
        experiment_ids: Sequence[str],
        metrics: Sequence[str] | None = None,
        modes: Mapping[str, str] | str | None = None,
    ) -> dict[str, Any]:
        """Runs side by side: ``experiments`` (basic info), ``metrics`` (per metric and run:
        last, min, max, count), ``modes`` (per metric: ``"min"`` or ``"max"``, from ``modes``
        or guessed from the name: loss, error... min; acc, f1, auc... max), ``best`` (per
        metric, ``run``: the best run in that mode, and the runs with the lowest and highest
        value), ``params`` (the parameters whose values differ) and ``all_params``.

        >>> tracker.compare(["0194c2", "0194c3"], modes={"val_acc": "max"})["best"]
        """
        exps = [self.get_or_raise(e) for e in experiment_ids]
        if isinstance(modes, str):
            _check_mode(modes)
            names = metrics or sorted({m for e in exps for m in e.metrics_summary})
            modes = dict.fromkeys(names, modes)
        result = q.compare_records([e.to_dict(metrics=False) for e in exps], metrics, modes)
        result["experiments"] = [
            {
                "experiment_id": e.experiment_id,
                "name": e.name,
                "status": e.status.value,
                "created_at": _iso(e.created_at),
                "duration": e.duration,
                "commit_hash": e.commit_hash,
                "branch": e.branch,
                "tags": e.tags,
            }
            for e in exps
        ]
        return result

    def get_summary(self) -> dict[str, Any]:
        """Counts over the whole store: ``total_experiments``, ``by_status``,
        ``unique_names``, ``branches``, ``total_metrics_logged`` (and ``metric_names``,
        ``tags``)."""
        self._ready()
        return self._store.index.summary()

    # -- lineage, resume, delete --------------------------------------------------------------

    def lineage(self, experiment_id: str) -> builtins.list[Experiment]:
        """The chain of runs that led to this one, oldest first, ending with it."""
        run = self.get_or_raise(experiment_id)
        chain = q.ancestors(run.experiment_id, self._parent_of)
        return [*(self.get_or_raise(e) for e in chain), run]

    def descendants(self, experiment_id: str) -> dict[str, Any]:
        """The tree of runs resumed from this one, and from those, ...:
        ``{"id": ..., "children": [...]}``."""
        eid = self.get_or_raise(experiment_id).experiment_id
        return q.descendants(eid, lambda i: [e.experiment_id for e in self.list(parent=i)])

    def _parent_of(self, experiment_id: str) -> str | None:
        try:
            return self._store.read_dict(experiment_id).get("parent_experiment")
        except (ExperimentNotFound, InvalidName):
            return None  # the parent was deleted (or the record names a malformed id)

    def children(self, experiment_id: str) -> builtins.list[Experiment]:
        """The runs resumed from this one (whose ``parent_experiment`` it is), oldest first."""
        return list(reversed(self.list(parent=experiment_id)))

    def resume(self, experiment_id: str, *, start: bool = True) -> Experiment:
        """A new run with the same name (plus ``-resumed``), params, tags and description as
        ``experiment_id``, whose parent it is. The old run is never changed. With
        ``start=False`` the new run is left PENDING, for another process to start by id."""
        from .records.models import ExperimentRecord

        old = self.get_or_raise(experiment_id)
        name = old.name if old.name.endswith("-resumed") else f"{old.name}-resumed"
        if start:
            return self.start(
                name,
                description=old.description,
                params=old.params,
                tags=old.tags,
                parent_experiment=old.experiment_id,
                sweep=old.sweep,
            )
        record = ExperimentRecord(
            experiment_id=new_experiment_id(),
            name=name,
            description=old.description,
            params=old.params,
            tags=old.tags,
            parent_experiment=old.experiment_id,
        )
        self._store.write(record)
        return self._experiment(record.to_dict())

    def exists(self, experiment_id: str) -> bool:
        """True if a run with this full id is stored (a file check, no index query).

        >>> tracker.exists("0194c2a1b3c4d5e6f7a8")
        """
        return self._store.exists(check_experiment_id(experiment_id))

    def record_run(
        self,
        record: ExperimentRecord,
        metrics: Iterable[tuple[str, float, int | None, float]] = (),
    ) -> Experiment:
        """Store a run that ran elsewhere (an importer): ``record`` as given, and its metric
        history, ``(name, value, step, unix time)`` rows in logging order, as one journal
        with the summaries computed from it. An id that exists already is refused.

        The journal is written whole (temp file and rename) before the record, so a run is
        either there with all its metrics or not there at all.

        >>> tracker.record_run(record, [("loss", 0.5, 1, 1733000000.0)])
        """
        from . import _fs
        from .records.journal import encode_frame, summarize
        from .records.models import MetricSummary

        eid = check_experiment_id(record.experiment_id)
        if self._store.exists(eid):
            raise InvalidValue(f"experiment {eid} exists already; it is not recorded again")
        rows = list(metrics)
        name_ids: dict[str, int] = {}
        for name, *_ in rows:
            if name not in name_ids:
                name_ids[name] = len(name_ids)
        journal = self._store.journal_path(eid)
        journal.parent.mkdir(parents=True, exist_ok=True)
        if rows:
            import numpy as np

            ids = np.array([name_ids[r[0]] for r in rows], dtype=np.uint32)
            values = np.array([float(r[1]) for r in rows], dtype=np.float64)
            steps = np.array([NO_STEP if r[2] is None else int(r[2]) for r in rows], np.int64)
            times = np.array([float(r[3]) for r in rows], dtype=np.float64)
            frame = encode_frame([(i, n) for n, i in name_ids.items()], ids, values, steps, times)
            _fs.atomic_write(journal, frame, fsync=False)
            syncer.add(journal)  # durable with the record, in the syncer's next batch
            record.metrics_summary = {
                name: MetricSummary(**summarize(values[ids == i], steps[ids == i]))
                for name, i in name_ids.items()
            }
        else:
            journal.unlink(missing_ok=True)
        self._store.write(record)
        return self._experiment(record.to_dict())

    def delete(self, experiment_id: str) -> bool:
        """Delete a run's record and metrics (not its weight commits); False when no run has
        this id (as in the seed). A run still running in a live process cannot be deleted."""
        found = self.get(experiment_id)
        if found is None:
            return False
        eid = found.experiment_id
        if self._run is not None and self._run.record.experiment_id == eid:
            raise InvalidValue(f"experiment {eid} is this tracker's active run; end it first")
        self._store.reap()
        if self._store.read_dict(eid)["status"] == "running":
            raise InvalidValue(f"experiment {eid} is running in a live process; stop it first")
        self._store.delete(eid)
        return True

    def mark_failed(
        self, experiment_id: str, error_message: str, error_detail: str | None = None
    ) -> bool:
        """Mark a pending or running run FAILED (for a supervisor whose worker died).
        Returns False when the run had already ended."""
        eid = self._store.resolve(experiment_id)
        return self._store.mark_failed(eid, error_message, error_detail)

    def reindex(self, progress: Any = None) -> dict[str, Any]:
        """Rebuild the query index from the records; ``progress(done, total)`` is called as
        it goes."""
        return self._store.reindex(progress)

    def restore_code(self, experiment_id: str, into: str | os.PathLike[str]) -> dict[str, Any]:
        """Write the code a run ran (its snapshot, or its clean commit) into a new folder."""
        from ._fs import check_output_path
        from .workspace import restore

        target = check_output_path(into, self.repo.path)
        exp = self.get_or_raise(experiment_id)
        return restore(exp.code, self._store_git(), target)


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


_RUN_COLUMNS = ("run_id", "name", "status", "created", "start_time", "end_time", "duration",
                "branch", "commit", "sweep", "parent", "commit_hash", "tags")  # fmt: skip
_HISTORY_COLUMNS = ["run_id", "name", "key", "step", "value", "timestamp"]


def summary_row(rec: Mapping[str, Any]) -> dict[str, Any]:
    """One run as a flat row with MLflow's column names (``params.lr``, ``metrics.loss``):
    what ``to_dataframe`` and ``coralx exp list --format csv`` show."""
    f = q.facts(rec)
    row: dict[str, Any] = {
        "run_id": f.id,
        "name": f.attrs["name"],
        "status": f.attrs["status"],
        "created": rec.get("created_at"),
        "start_time": rec.get("started_at"),
        "end_time": rec.get("ended_at"),
        "duration": f.duration(time.time()),
        "branch": f.attrs["branch"],
        "commit": f.attrs["commit"],
        "sweep": f.attrs["sweep"],
        "parent": f.attrs["parent"],
        "commit_hash": rec.get("commit_hash"),
        "tags": sorted(f.tags),
    }
    for key, value in sorted(q.flatten_params(f.params_raw).items()):
        row[f"params.{key}"] = value
    for name, s in sorted(f.metrics.items()):
        row[f"metrics.{name}"] = s["last"]
        for stat in ("min", "max", "count"):
            row[f"metrics.{name}.{stat}"] = s[stat]
    return row
