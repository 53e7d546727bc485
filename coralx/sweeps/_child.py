"""Running one task where an executor put it: :func:`execute_task`, and the entry point of a
subprocess child (``python -m coralx.sweeps._child JOB.json OUTCOME.json``).

The child imports as little as it can: the standard library, this package's light modules, the
user's script, and the tracker only when the task has a store. Every way a task can end is
turned into an :class:`Outcome`; only a process that dies outright (a segfault, ``os._exit``)
leaves no outcome, and the parent then reports it (see ``task.crash_outcome``).
"""

from __future__ import annotations

import os
import sys
import time

from .config import _unwrap, check_json
from .run import Run
from .seeding import apply_seeds
from .task import Outcome, Task

# Not `from typing import ...`: importing typing is a measurable part of a child's start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "execute_task",
    "execute_task_dict",
    "is_missing_guard",
    "main",
    "refuse_sweep_during_import",
]


class _InterruptGuard:
    """In a worker process, Ctrl-C (SIGINT from the sweep's parent) interrupts the user's
    function only. Arriving while the record is being started or ended, it waits until the
    function is entered (which it then cancels at once) or is dropped once the function has
    returned: a record is never left half-written by an interrupt."""

    def __init__(self) -> None:
        self.installed = False
        self.in_user_code = False
        self.pending = False

    def install(self) -> None:
        # The C module: ``signal`` itself imports enum, a measurable part of a child's start.
        import _signal

        _signal.signal(_signal.SIGINT, self._handle)
        self.installed = True

    def _handle(self, signum: int, frame: Any) -> None:
        if self.in_user_code:
            raise KeyboardInterrupt
        self.pending = True

    def enter(self) -> None:
        if self.installed:
            self.in_user_code = True
            if self.pending:
                self.pending = False
                raise KeyboardInterrupt

    def leave(self) -> None:
        self.in_user_code = False


_guard = _InterruptGuard()

# The script being imported to find a task's function, while it is: a sweep started then is
# the script's module-level call re-run in a worker (no `if __name__ == "__main__":` guard).
_importing: list[str] = []


def refuse_sweep_during_import() -> None:
    """Called where a sweep starts: raises :class:`MissingMainGuard` if this process is a
    worker importing the sweep's script, as ``multiprocessing`` refuses to start a process
    while a child is still bootstrapping."""
    if _importing:
        from ..errors import MissingMainGuard

        raise MissingMainGuard(_importing[-1])


def is_missing_guard(outcome: Outcome) -> bool:
    """Whether ``outcome`` is a worker's report that the script has no main guard."""
    return (outcome.error or {}).get("type") == "MissingMainGuard"


def _load_target(task: Task, prefer_local: bool) -> Any:
    _importing.append(task.fn.file or task.fn.module or task.fn.qualname)
    try:
        return task.fn.load(prefer_local=prefer_local)
    finally:
        _importing.pop()


def install_interrupt_guard() -> None:
    """Call once in a process that only runs tasks (a subprocess child, a fork worker)."""
    _guard.install()


def execute_task(task: Task, *, prefer_local: bool = False) -> Outcome:
    """Run ``task`` here and now: seed, start its record, call the function, end the record."""
    start = time.monotonic()
    for entry in task.sys_path:
        if entry not in sys.path:
            sys.path.append(entry)
    tracker = None
    try:
        target = _load_target(task, prefer_local)
        fn, callbacks, hooks = _unpack(target)
        apply_seeds(task.seeds)
        repo = None
        if task.repo is not None:
            tracker, repo = _start_record(task)
        run = Run(task, tracker=tracker, repo=repo, callbacks=callbacks, hooks=hooks)
    except BaseException as exc:
        outcome = _failed(task, tracker, exc, start, during="setting up the run")
    else:
        outcome = _call(task, fn, run, tracker, start)
    if tracker is not None:
        # Written now; made durable by the tracker's background fsync a moment later (not
        # waited for here: that wait was most of a short run's cost). A process that leaves
        # with os._exit (a fork worker) waits for it first: see ``wait_durable``.
        _quietly(getattr(tracker, "flush", lambda wait=False: None), False)
    return outcome


def wait_durable() -> None:
    """Block until every record and journal this process wrote is on disk (before os._exit,
    which skips the interpreter's exit handlers that do it otherwise)."""
    sync = sys.modules.get("coralx.records.sync")
    if sync is not None:
        _quietly(sync.syncer.wait)


def _call(task: Task, fn: Any, run: Any, tracker: Any, start: float) -> Outcome:
    try:
        try:
            _guard.enter()
            run._start()
            value = fn(run.config, run) if _arity(fn) >= 2 else fn(run.config)
        finally:
            _guard.leave()
        result, context_update = _normalise(value)
        run._finish("completed")
        if tracker is not None:
            tracker.end(commit_hash=run.final_commit, result=result)
    except KeyboardInterrupt:
        if tracker is not None:
            _quietly(tracker.cancel)
        return Outcome(
            status="cancelled",
            error={"type": "KeyboardInterrupt", "message": "cancelled (Ctrl-C)"},
            duration=time.monotonic() - start,
            experiment_id=task.experiment_id,
            metrics=run.metrics,
        )
    except BaseException as exc:
        _quietly(run._finish, "failed")
        outcome = _failed(task, tracker, exc, start)
        outcome.metrics = run.metrics
        return outcome
    merged = _unwrap(run._context_update)
    merged.update(context_update or {})
    return Outcome(
        status="completed",
        result=result,
        duration=time.monotonic() - start,
        experiment_id=task.experiment_id,
        metrics=run.metrics,
        context_update=merged or None,
    )


def _start_record(task: Task) -> tuple[Any, Any]:
    from ..experiments import ExperimentTracker
    from ..repository import Repository

    repo = Repository(task.repo or ".")
    tracker = ExperimentTracker(repo)
    task.start_run(tracker)
    return tracker, repo


def _unpack(target: Any) -> tuple[Any, list[Any], dict[str, list[Any]]]:
    """An experiment object gives its function, callbacks and hooks; a plain function, itself."""
    fn = getattr(target, "fn", None)
    if fn is not None and callable(fn):
        return fn, list(getattr(target, "callbacks", [])), dict(getattr(target, "hooks", {}))
    if not callable(target):
        raise TypeError(f"{target!r} is not callable")
    return target, [], {}


def _arity(fn: Any) -> int:
    code = getattr(fn, "__code__", None)
    if code is None:
        return 2
    count: int = code.co_argcount
    return count - 1 if hasattr(fn, "__self__") else count


def _normalise(value: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    if value is None:
        return None, None
    if not isinstance(value, dict):
        value = {"value": value}
    value = dict(value)
    context_update = value.pop("context_update", None)
    check_json(value, "the returned result")
    if context_update is not None:
        check_json(context_update, "context_update")
        context_update = _unwrap(context_update)
    return _unwrap(value), context_update


def _failed(
    task: Task, tracker: Any, exc: BaseException, start: float, during: str = ""
) -> Outcome:
    message = f"{type(exc).__name__}: {exc}"
    if during:
        message = f"{message} (while {during})"
    import traceback

    detail = traceback.format_exc()
    if tracker is not None:
        _quietly(tracker.fail, message, detail)
    return Outcome(
        status="failed",
        error={"type": type(exc).__name__, "message": str(exc), "traceback": detail},
        duration=time.monotonic() - start,
        experiment_id=task.experiment_id,
        # No record was started: the parent writes the failed one (as for a dead process).
        crashed=tracker is None and task.repo is not None,
    )


def _quietly(fn: Any, *args: Any) -> None:
    # Best effort while already handling an error: the original error is what gets reported.
    try:
        fn(*args)
    except Exception:
        import traceback

        traceback.print_exc()


def execute_task_dict(data: dict[str, Any]) -> dict[str, Any]:
    """:func:`execute_task` over plain dicts (for executors that ship JSON, like Ray)."""
    return execute_task(Task.from_dict(data)).to_dict()


def write_outcome(path: str, outcome: Outcome) -> None:
    """The outcome for the parent, in ``marshal`` format: built in (nothing to import) and,
    for the plain data a task and its outcome hold, as exact as JSON."""
    import marshal

    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(marshal.dumps(outcome.to_dict()))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m coralx.sweeps._child JOB.json OUTCOME.json", file=sys.stderr)
        return 2
    job_path, outcome_path = args
    install_interrupt_guard()
    import marshal

    with open(job_path, "rb") as f:
        task = Task.from_dict(marshal.loads(f.read()))
    outcome = execute_task(task)
    write_outcome(outcome_path, outcome)
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
