"""The sweep runner's side of the experiment records: what the parent process reads and writes
through the tracker (the child process writes its own record)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ExperimentNotFound

if TYPE_CHECKING:
    from ..repository import Repository
    from .record import Attempt
    from .task import Outcome, Task

__all__ = ["mark_dead", "refresh"]


def _tracker(repo: Repository) -> Any:
    from ..experiments import ExperimentTracker

    return ExperimentTracker(repo)


def _status(exp: Any) -> str:
    status = getattr(exp, "status", "")
    return str(getattr(status, "value", status))


def refresh(repo: Repository, attempt: Attempt) -> None:
    """Bring an attempt left unfinished (its sweep process stopped) up to date from its record.
    Reading the record through the tracker marks a run whose process is gone as failed."""
    try:
        exp = _tracker(repo).get_or_raise(attempt.experiment_id)
    except ExperimentNotFound:
        attempt.status = "cancelled"
        attempt.error = {
            "type": "NotStarted",
            "message": "the sweep stopped before this configuration started",
        }
        return
    attempt.status = _status(exp)
    attempt.result = getattr(exp, "result", None)
    attempt.metrics = dict(getattr(exp, "metrics_summary", None) or {})
    message = getattr(exp, "error_message", None)
    if message:
        attempt.error = {
            "type": "Failed",
            "message": message,
            "traceback": getattr(exp, "error_detail", None),
        }


def mark_dead(repo: Repository, task: Task, outcome: Outcome) -> None:
    """The process running ``task`` died: mark its record failed, creating the record if the
    process died before it could start one."""
    error = outcome.error or {}
    message = str(error.get("message") or "the process running this configuration died")
    detail = error.get("stderr_tail") or error.get("traceback") or None
    tracker = _tracker(repo)
    try:
        tracker.mark_failed(task.experiment_id, message, detail)
        return
    except ExperimentNotFound:
        pass
    task.start_run(tracker)
    tracker.fail(message, detail)
