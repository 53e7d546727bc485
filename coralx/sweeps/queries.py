"""Reading stored sweeps: the rows ``coralx sweep list`` and ``coralx sweep show`` print, and
running a sweep script from the command line (``coralx sweep run FILE.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import InvalidValue
from .record import FINAL, SweepRecord, find_sweep, list_sweeps

if TYPE_CHECKING:
    from ..repository import Repository
    from .experiment import SweepExperiment
    from .runner import SweepResult

__all__ = ["describe_sweep", "experiments_in", "run_file", "sweep_summaries"]


def sweep_summaries(repo: Repository, name: str | None = None) -> list[dict[str, Any]]:
    """One dict per sweep, newest first: id, experiment name, status, shape, counts, verdict."""
    return [_summary(repo, s) for s in list_sweeps(repo, name)]


def _status(repo: Repository, record: SweepRecord) -> str:
    """``running`` only while a process holds the sweep's lock: a sweep whose process was
    killed shows as ``stopped`` (running it again continues it)."""
    if record.status != "running":
        return record.status
    from ..errors import SweepBusy
    from .record import sweep_lock

    try:
        sweep_lock(repo, record.sweep_id).release()
    except SweepBusy:
        return "running"
    return "stopped"


def _summary(repo: Repository, record: SweepRecord) -> dict[str, Any]:
    return {
        "sweep_id": record.sweep_id,
        "name": record.name,
        "status": _status(repo, record),
        "shape": record.shape,
        "configs": len(record.configs),
        "runs": len(record.runs),
        "counts": record.counts(),
        "verdict": (record.verdict or {}).get("verdict"),
        "report_error": (record.verdict or {}).get("error"),
        "seed": record.seed,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "testing": record.testing,
        "metric": record.metric,
    }


def describe_sweep(repo: Repository, sweep_id: str) -> dict[str, Any]:
    """A sweep and one row per configuration of its plan: position, name, status of the latest
    attempt (runs left unfinished are brought up to date from their records), the main metric,
    the number of attempts and the latest experiment id."""
    record = find_sweep(repo, sweep_id)
    rows = []
    for entry in record.configs:
        attempts = record.attempts(entry["config_hash"])
        latest = attempts[-1] if attempts else None
        if latest is not None and latest.status not in FINAL:
            _refresh(repo, latest)
        value = None
        if latest is not None and record.metric:
            value = _metric(latest.result, latest.metrics, record.metric, record.mode)
        rows.append(
            {
                "position": entry["position"],
                "name": entry["name"],
                "config_hash": entry["config_hash"],
                "status": latest.status if latest else "not run",
                "metric": value,
                "attempts": len(attempts),
                "experiment_id": latest.experiment_id if latest else None,
                "parent_experiment": latest.parent_experiment if latest else None,
                "error": (latest.error or {}).get("message") if latest else None,
            }
        )
    return {**_summary(repo, record), "context": record.context, "rows": rows}


def _refresh(repo: Repository, attempt: Any) -> None:
    try:
        from . import _records

        _records.refresh(repo, attempt)
    except ImportError:  # a store without experiment records yet
        pass


def _metric(result: Any, metrics: Any, metric: str, mode: str) -> float | None:
    if isinstance(result, dict) and isinstance(result.get(metric), int | float):
        return float(result[metric])
    summary = (metrics or {}).get(metric) or {}
    value = summary.get("min" if mode == "min" else "max")
    return float(value) if isinstance(value, int | float) else None


def experiments_in(path: str) -> list[SweepExperiment]:
    """The experiments a script defines (loaded as a module: its main block does not run)."""
    from .experiment import SweepExperiment
    from .task import load_script

    module = load_script(path)
    found = [v for v in vars(module).values() if isinstance(v, SweepExperiment)]
    unique = list({id(e): e for e in found}.values())
    if not unique:
        raise InvalidValue(f"{path} defines no @coralx.experiment function")
    return unique


def run_file(
    path: str, argv: Sequence[str] = (), *, experiment: str | None = None, **options: Any
) -> list[SweepResult]:
    """Run the sweeps a script defines, as ``python FILE.py ARGS`` would (``argv`` are the
    script's options: ``--set``, ``--workers``, ...). ``experiment`` picks one by name."""
    chosen = experiments_in(path)
    if experiment is not None:
        chosen = [e for e in chosen if e.name == experiment]
        if not chosen:
            raise InvalidValue(f"{path} has no experiment named {experiment!r}")
    from ._cli import SweepFailedExit

    out = []
    for e in chosen:
        try:
            out.append(e.run(list(argv), **options))
        except SweepFailedExit as exc:  # the next experiment of the file still runs
            out.append(exc.result)
    return out
