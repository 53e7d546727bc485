"""Running a sweep: plan, skip what is done, run the rest on an executor, collect results.

>>> result = run_sweep(train, executor="fork", workers=2)
>>> result.results.best("val_loss"), result.verdict, result.counts

Every configuration is an experiment record (started by the process that runs it, with an id
this process assigns). A configuration whose hash already COMPLETED in this sweep is skipped and
its result reused; a failed, crashed or cancelled one runs again as a child of the failed run
(``parent_experiment``). Ctrl-C cancels the running configurations cleanly; running again
continues where it stopped.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidValue
from ..ids import new_experiment_id, new_sweep_id
from ._child import is_missing_guard
from .config import Config, ConfigList, config_hash
from .executors import NOT_STARTED, Executor, get_executor
from .record import FINAL, Attempt, SweepRecord, find_sweep, list_sweeps, now, sweep_dir, sweep_lock
from .results import Result, ResultSet
from .seeding import seeds_of
from .task import FunctionRef, Outcome, Task

if TYPE_CHECKING:
    from ..repository import Repository
    from .experiment import SweepExperiment

__all__ = ["Progress", "Stage", "SweepResult", "run_sweep"]


@dataclass
class Stage:
    """Configurations that run together, after the stages before them (an experiment's
    ``stages(configs)`` returns them; without it the whole sweep is one stage): ``names`` of
    the configurations, ``workers`` at once, whether to ``stream`` their output (None: as the
    sweep says), and with ``defer_context`` their context updates are merged only when the
    whole stage has ended, in the order the runs finished (the last writer wins), so runs of
    one stage never see each other's updates."""

    names: list[str]
    workers: int = 1
    stream: bool | None = None
    defer_context: bool = False


@dataclass
class Progress:
    """Counts the runner reports as it goes (``on_progress(progress, result_or_None)``)."""

    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    running: int = 0
    cancelled: int = 0

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.skipped + self.cancelled


@dataclass
class SweepResult:
    """What a sweep run gives back."""

    sweep_id: str | None
    results: ResultSet
    status: str
    verdict: str | None = None
    progress: Progress = field(default_factory=Progress)
    #: ``"TypeError: ..."`` when the report function raised (the results are kept regardless).
    report_error: str | None = None
    #: The store's folder (None untracked), and whether this sweep created it.
    store: str | None = None
    created_store: bool = False

    @property
    def counts(self) -> dict[str, int]:
        p = self.progress
        return {
            "completed": p.done,
            "failed": p.failed,
            "skipped": p.skipped,
            "cancelled": p.cancelled,
        }


@dataclass
class _Planned:
    """One unique configuration (by hash) to run or reuse, and the positions that share it."""

    index: int
    config: Config
    config_hash: str
    indices: list[int]
    parent: str | None = None
    cached: Attempt | None = None
    experiment_id: str | None = None
    attempt: Attempt | None = None


def run_sweep(
    experiment: SweepExperiment,
    *,
    executor: str | Executor | None = None,
    workers: int | None = None,
    rerun: bool = False,
    report_only: bool = False,
    testing: bool = False,
    stream: bool = False,
    sweep_id: str | None = None,
    new: bool = False,
    overrides: Mapping[str, Any] | None = None,
    axis_overrides: Mapping[str, Any] | None = None,
    repo: Any = None,
    track: bool = True,
    on_progress: Callable[[Progress, Result | None], None] | None = None,
    label: str | None = None,
    output_root: str | os.PathLike[str] | None = None,
    by_value: bool = False,
) -> SweepResult:
    """Run ``experiment``'s sweep. Bad input (duplicate names, values JSON cannot hold, an
    unknown executor, Ray missing) raises before anything runs.

    ``track=False`` runs without a store: no records, no caching, no weight commits. Otherwise
    the store is the one at or above ``repo`` (default: the experiment's ``repo``, else the
    current folder), created there if there is none, as ``Repository(path, init=True)`` does.
    ``overrides`` (``--set``) may not change a key the sweep varies; ``axis_overrides``
    (``--set-axis``) replace the axis that sets a key by the values given.
    ``label`` names the sweep: the latest sweep with that label is continued, or a new one
    made (pyexp's ``--timestamp``). ``output_root`` puts each configuration's ``out`` folder at
    ``<output_root>/<name>-<config hash>`` instead of inside the store. ``by_value`` ships the
    function itself to the executor's processes (cloudpickle), for functions that cannot be
    imported by name (defined in a notebook or inside another function).
    """
    from ._child import refuse_sweep_during_import

    refuse_sweep_during_import()
    configs = experiment.build_configs(
        testing=testing, overrides=overrides, axis_overrides=axis_overrides, seeds=False
    )
    chosen = get_executor(executor if executor is not None else experiment.executor)
    n_workers = max(1, workers if workers is not None else experiment.workers)
    if chosen.max_workers is not None:
        n_workers = min(n_workers, chosen.max_workers)
    fn_ref = FunctionRef.of(experiment, by_value=by_value)
    where = repo if repo is not None else experiment.repo
    if report_only:
        if not track:
            raise InvalidValue("--report reads a stored sweep: it needs a coralx store")
        return _report_only(experiment, _find_repo(where), sweep_id, testing, label)
    store, created = _open_repo(where) if track else (None, False)
    context = experiment.run_setup()
    experiment.draw_seeds(configs, context)  # after the setup: its seed stands for theirs
    run = _SweepRun(experiment, configs, chosen, n_workers, fn_ref, store, context)
    run.stream = stream
    run.testing = testing
    run.on_progress = on_progress
    run.label = label
    run.output_root = os.fspath(output_root) if output_root is not None else None
    result = run.execute(rerun=rerun, sweep_id=sweep_id, new=new)
    result.store = str(store.path) if store is not None else None
    result.created_store = created
    return result


def _find_repo(repo: Any) -> Repository:
    from ..repository import Repository

    if isinstance(repo, Repository):
        return repo
    return Repository.discover(repo)


def _open_repo(repo: Any) -> tuple[Repository, bool]:
    """The store at or above ``repo`` (a path, default the current folder), else a new one
    created there: what ``Repository(path, init=True)`` gives the tracker. True if created."""
    from ..errors import RepositoryNotFound
    from ..repository import Repository

    if isinstance(repo, Repository):
        return repo, False
    try:
        return Repository.discover(repo), False
    except RepositoryNotFound:
        return Repository(repo if repo is not None else ".", init=True), True


class _SweepRun:
    def __init__(
        self,
        experiment: SweepExperiment,
        configs: ConfigList,
        executor: Executor,
        workers: int,
        fn_ref: FunctionRef,
        repo: Repository | None,
        context: dict[str, Any],
    ) -> None:
        self.experiment = experiment
        self.configs = configs
        self.executor = executor
        self.workers = workers
        self.fn_ref = fn_ref
        self.repo = repo
        self.context = context
        self.stream = False
        self.testing = False
        self.on_progress: Callable[[Progress, Result | None], None] | None = None
        self.progress = Progress(total=len(configs))
        self.results: list[Result | None] = [None] * len(configs)
        self.record: SweepRecord | None = None
        self._lock = threading.Lock()
        self._last_save = 0.0
        self._sys_path = list(sys.path)
        self._tmp_logs: str | None = None
        # The code every configuration runs, captured once when the sweep starts running.
        self._code: dict[str, Any] | None = None
        self._task_common: dict[str, Any] | None = None
        self._hashes = [config_hash(c) for c in configs]
        self._out_base: str | None = None
        self.label: str | None = None
        self.output_root: str | None = None
        self._stage: Stage | None = None
        self._pending_context: dict[str, Any] = {}

    # -- the whole run ---------------------------------------------------------------------------

    def execute(self, *, rerun: bool, sweep_id: str | None, new: bool) -> SweepResult:
        lock = None
        if self.repo is not None:
            self.record = self._open_record(sweep_id, new)
            lock = sweep_lock(self.repo, self.record.sweep_id)
        try:
            if self.record is not None:
                self._reconcile()
            plan = self._plan(rerun)
            status = self._run_plan(plan)
            return self._finish(status)
        finally:
            if lock is not None:
                lock.release()

    def _open_record(self, sweep_id: str | None, new: bool) -> SweepRecord:
        assert self.repo is not None
        exp = self.experiment
        record: SweepRecord | None
        if sweep_id:
            record = find_sweep(self.repo, sweep_id)
        else:
            earlier = _matching_sweeps(
                self.repo, exp.name, self.fn_ref.label, self.testing, self.label
            )
            record = earlier[0] if earlier and not new else None
        if record is None:
            record = SweepRecord(
                sweep_id=new_sweep_id(),
                name=exp.name,
                function=self.fn_ref.label,
                script=self.fn_ref.file,
                testing=self.testing,
                label=self.label,
            )
        record.status = "running"
        record.shape = list(self.configs.shape)
        record.executor = self.executor.name
        record.workers = self.workers
        record.metric = exp.metric
        record.mode = exp.mode
        record.seed = exp.base_seed
        record.context = self.context
        record.configs = [
            {
                "name": c["name"],
                "config_hash": self._hashes[i],
                "position": list(_position(i, self.configs.shape)),
                "config": c.to_dict(),
            }
            for i, c in enumerate(self.configs)
        ]
        return record

    def _reconcile(self) -> None:
        """Attempts left unfinished by an earlier process take their status from their
        experiment records (the tracker marks a dead run FAILED)."""
        assert self.record is not None and self.repo is not None
        open_attempts = [a for a in self.record.runs if a.status not in FINAL]
        if not open_attempts:
            return
        from . import _records

        for attempt in open_attempts:
            _records.refresh(self.repo, attempt)

    def _plan(self, rerun: bool) -> list[_Planned]:
        by_hash: dict[str, _Planned] = {}
        latest_of: dict[str, Attempt] = {}  # the latest attempt per hash, found in one pass
        if self.record is not None:
            for attempt in self.record.runs:
                if (attempt.error or {}).get("type") == _NOT_STARTED:
                    continue  # planned, never started (its sweep process died): no record
                latest_of[attempt.config_hash] = attempt
        for i, config in enumerate(self.configs):
            h = self._hashes[i]
            if h in by_hash:
                by_hash[h].indices.append(i)
                continue
            planned = _Planned(index=i, config=config, config_hash=h, indices=[i])
            latest = latest_of.get(h)
            if latest is not None and latest.status == "completed" and not rerun:
                planned.cached = latest
            elif latest is not None and latest.status in ("failed", "cancelled"):
                planned.parent = latest.experiment_id
            by_hash[h] = planned
        return list(by_hash.values())

    # -- running the plan ------------------------------------------------------------------------

    def _run_plan(self, plan: list[_Planned]) -> str:
        todo: list[_Planned] = []
        for planned in plan:
            if planned.cached is not None:
                self._deliver(planned, _cached_outcome(planned.cached), cached=True)
            else:
                todo.append(planned)
        if self.record is not None:
            for planned in todo:
                planned.experiment_id = new_experiment_id()
                planned.attempt = self._attempt(planned)
                self.record.runs.append(planned.attempt)
            self.record.save(self._repo())
        if not todo:
            return "completed"
        if self.repo is not None:
            # Every configuration runs the code as it is now: git is asked once, not per run.
            from ..experiments import capture_code

            self._code = capture_code(self.repo)
        else:  # without a store, runs' output is still kept apart, for a while
            import tempfile

            self._tmp_logs = tempfile.mkdtemp(prefix="coralx-sweep-logs-")
        stages = self._stages(todo)
        self.executor.start(max(workers for _, workers, _ in stages))
        try:
            for part, workers, stage in stages:
                self._stage = stage
                try:
                    status = self._dispatch(part, workers)
                finally:
                    self._stage = None
                    self._merge_pending_context()
                if status == "cancelled":
                    return status
            return "completed"
        finally:
            self.executor.shutdown()
            if self._tmp_logs is not None:
                import shutil

                shutil.rmtree(self._tmp_logs, ignore_errors=True)

    def _stages(self, todo: list[_Planned]) -> list[tuple[list[_Planned], int, Stage | None]]:
        """The plan's runs in stages: one stage of everything, or the experiment's stages."""
        stages_of = getattr(self.experiment, "stages", None)
        if stages_of is None:
            return [(todo, self.workers, None)]
        planned_at = {i: p for p in todo for i in p.indices}
        index_of = {c["name"]: i for i, c in enumerate(self.configs)}
        limit = self.executor.max_workers
        out: list[tuple[list[_Planned], int, Stage | None]] = []
        placed: set[int] = set()
        for stage in stages_of(self.configs):
            found = [planned_at.get(index_of.get(name, -1)) for name in stage.names]
            part = list({id(p): p for p in found if p is not None and id(p) not in placed}.values())
            placed.update(id(p) for p in part)
            if part:
                workers = max(1, stage.workers if limit is None else min(stage.workers, limit))
                out.append((part, workers, stage))
        rest = [p for p in todo if id(p) not in placed]  # in no stage: run last, as one
        if rest or not out:
            out.append((rest, self.workers, None))
        return out

    def _merge_pending_context(self) -> None:
        if self._pending_context:
            with self._lock:
                self.context = {**self.context, **self._pending_context}
                self._pending_context = {}
                if self.record is not None:
                    self.record.context = self.context

    def _dispatch(self, todo: list[_Planned], workers: int) -> str:
        by_index = {p.index: p for p in todo}
        started: set[int] = set()

        def on_start(task: Task) -> None:
            started.add(task.index)
            self.progress.running += 1
            attempt = self._find_attempt(by_index[task.index])
            if attempt is not None:
                attempt.status = "running"
                attempt.started_at = now()

        def tick() -> None:
            self._notify(None)

        stopping: list[bool] = []

        def tasks() -> Iterator[Task]:
            # Built when a worker is free, so they see context updates; none after Ctrl-C.
            for planned in todo:
                if stopping:
                    return
                yield self._task(planned)

        outcomes = self.executor.run_all(tasks(), workers, on_start=on_start, tick=tick)
        cancelled = False
        no_guard: Outcome | None = None
        while True:
            try:
                task, outcome = next(outcomes)
            except StopIteration:
                break
            except KeyboardInterrupt:  # the executor drained its running tasks, then re-raised
                cancelled = True
                break
            try:
                self.progress.running -= 1
                if no_guard is None and is_missing_guard(outcome):
                    # The script re-ran its sweep on import: no configuration ran; stop all.
                    no_guard = outcome
                    stopping.append(True)
                    self.executor.cancel()
                if no_guard is not None or outcome.status == NOT_STARTED:
                    started.discard(task.index)
                    continue
                self._deliver(by_index[task.index], outcome)
            except KeyboardInterrupt:
                cancelled = True
                stopping.append(True)
                self.executor.cancel()
        if no_guard is not None:
            for planned in todo:
                self._drop_attempt(planned)
            if self.record is not None:
                self.record.status = "failed"
                self.record.save(self._repo())
            from ..errors import MissingMainGuard

            raise MissingMainGuard(self.fn_ref.file or self.fn_ref.label)
        if cancelled:
            for planned in todo:
                if planned.index not in started:
                    self._drop_attempt(planned)
            return "cancelled"
        return "completed"

    # -- bookkeeping -----------------------------------------------------------------------------

    def _task(self, planned: _Planned) -> Task:
        config = planned.config
        common = self._task_common
        if common is None:
            common = self._task_common = self._common_fields()
        out_dir = None
        if self.output_root is not None:
            out_dir = os.path.join(self.output_root, f"{config['name']}-{planned.config_hash}")
        elif self._out_base is not None and planned.experiment_id:
            out_dir = self._out_base + planned.experiment_id
        repeat = config.get("repeat")
        # Tasks share the context: it is replaced, never changed, when a run updates it. An
        # in-process executor gets its own copy, as the function could change it.
        context = dict(self.context) if self.executor.in_process else self.context
        stream = self._stage.stream if self._stage is not None else None
        if stream is not None:
            common = {**common, "stream": stream}
        return Task(
            self.fn_ref,
            **common,
            config=config.to_dict(),
            name=config["name"],
            index=planned.index,
            position=list(_position(planned.index, self.configs.shape)),
            config_hash=planned.config_hash,
            experiment_id=planned.experiment_id,
            parent_experiment=planned.parent,
            context=context,
            seeds=seeds_of(config, self.context),
            repeat=repeat if isinstance(repeat, int) else None,
            out_dir=out_dir,
        )

    def _common_fields(self) -> dict[str, Any]:
        """The fields every task of this sweep shares, worked out once."""
        repo = self.repo
        log_dir = self._tmp_logs
        if repo is not None and self.record is not None:
            base = sweep_dir(repo, self.record.sweep_id)
            self._out_base = os.path.join(str(base / "out"), "")
            log_dir = str(base / "logs")
        return {
            "experiment": self.experiment.name,
            "sweep_id": self.record.sweep_id if self.record else None,
            "repo": str(repo.root) if repo is not None else None,
            "tags": [*self.experiment.tags, *(["testing"] if self.testing else [])],
            "description": self.experiment.description,
            "testing": self.testing,
            "log_dir": log_dir,
            "stream": self.stream,
            "sys_path": [] if self.executor.shares_memory else self._sys_path,
            "code": self._code,
        }

    def _attempt(self, planned: _Planned) -> Attempt:
        assert planned.experiment_id is not None
        return Attempt(
            experiment_id=planned.experiment_id,
            config_hash=planned.config_hash,
            config_name=planned.config["name"],
            position=list(_position(planned.index, self.configs.shape)),
            parent_experiment=planned.parent,
        )

    def _find_attempt(self, planned: _Planned) -> Attempt | None:
        return planned.attempt

    def _drop_attempt(self, planned: _Planned) -> None:
        if self.record is not None and planned.experiment_id is not None:
            self.record.runs = [
                a for a in self.record.runs if a.experiment_id != planned.experiment_id
            ]

    def _deliver(self, planned: _Planned, outcome: Outcome, cached: bool = False) -> None:
        with self._lock:
            if outcome.crashed and self.repo is not None and planned.experiment_id:
                from . import _records

                _records.mark_dead(self.repo, self._task(planned), outcome)
            if outcome.context_update and self._stage is not None and self._stage.defer_context:
                self._pending_context.update(outcome.context_update)
            elif outcome.context_update:  # a new dict: tasks already built keep theirs
                self.context = {**self.context, **outcome.context_update}
                if self.record is not None:
                    self.record.context = self.context
            attempt = None if cached else self._find_attempt(planned)
            if attempt is not None:
                attempt.status = outcome.status
                attempt.result = outcome.result
                attempt.error = outcome.error
                attempt.metrics = outcome.metrics
                attempt.ended_at = now()
                attempt.duration = outcome.duration
                attempt.context_update = outcome.context_update
            for i in planned.indices:
                result = self._result(i, planned, outcome, cached)
                self.results[i] = result
                self._count(result)
            self._maybe_save()
        self._notify(self.results[planned.indices[0]])

    def _result(self, i: int, planned: _Planned, outcome: Outcome, cached: bool) -> Result:
        config = self.configs[i]
        return Result(
            name=config["name"],
            config=config,
            status=outcome.status,
            position=_position(i, self.configs.shape),
            experiment_id=outcome.experiment_id or planned.experiment_id,
            result=outcome.result,
            error=outcome.error,
            metrics=outcome.metrics,
            cached=cached,
            parent_experiment=planned.parent,
            duration=outcome.duration,
        )

    def _count(self, result: Result) -> None:
        p = self.progress
        if result.cached:
            p.skipped += 1
        elif result.status == "completed":
            p.done += 1
        elif result.status == "cancelled":
            p.cancelled += 1
        else:
            p.failed += 1

    def _notify(self, result: Result | None) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress, result)

    def _maybe_save(self) -> None:
        if self.record is None:
            return
        if time.monotonic() - self._last_save > 0.5:
            self.record.save(self._repo())
            self._last_save = time.monotonic()

    def _repo(self) -> Repository:
        assert self.repo is not None
        return self.repo

    def _finish(self, status: str) -> SweepResult:
        if status == "cancelled":
            for i, config in enumerate(self.configs):
                if self.results[i] is None:
                    self.results[i] = Result(
                        name=config["name"],
                        config=config,
                        status="not run",
                        position=_position(i, self.configs.shape),
                    )
        results = ResultSet([r for r in self.results if r is not None], self.configs.shape)
        if status != "cancelled" and any(r.status != "completed" for r in results):
            status = "failed"
        verdict = report_error = None
        if self.record is not None:
            self.record.status = status
            self.record.save(self._repo())
        if status != "cancelled":
            verdict, report_error = self._report(results)
        return SweepResult(
            sweep_id=self.record.sweep_id if self.record else None,
            results=results,
            status=status,
            verdict=verdict,
            progress=self.progress,
            report_error=report_error,
        )

    def _report(self, results: ResultSet) -> tuple[str | None, str | None]:
        """The verdict, or the error of a report function that raised: the runs and their
        records are the sweep's results whatever the report does with them."""
        verdict, error = run_report_safely(self.experiment, results)
        if self.record is not None and (verdict is not None or error is not None):
            self.record.verdict = {"verdict": verdict, "error": error, "at": now()}
            self.record.save(self._repo())
        return verdict, error


def run_report_safely(
    experiment: SweepExperiment, results: ResultSet
) -> tuple[str | None, str | None]:
    """``(verdict, None)``, or ``(None, "TypeError: ... (report.py:12)")`` if the report raised."""
    try:
        verdict = experiment.run_report(results)
    except Exception as exc:
        return None, _brief_error(exc)
    return (verdict.value if verdict is not None else None), None


def _brief_error(exc: BaseException) -> str:
    """``Type: message (file:line)`` of where the exception was raised."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


_NOT_STARTED = "NotStarted"  # see _records.refresh


def _cached_outcome(attempt: Attempt) -> Outcome:
    return Outcome(
        status="completed",
        result=attempt.result,
        experiment_id=attempt.experiment_id,
        metrics=attempt.metrics,
        duration=attempt.duration or 0.0,
        context_update=attempt.context_update,
    )


def _position(index: int, shape: Sequence[int]) -> tuple[int, ...]:
    out = []
    for n in reversed(shape):
        out.append(index % n)
        index //= n
    return tuple(reversed(out))


def _matching_sweeps(
    repo: Repository, name: str, function: str, testing: bool, label: str | None
) -> list[SweepRecord]:
    """The sweeps of this experiment's function (newest first) that a run continues."""
    return [
        s
        for s in list_sweeps(repo, name)
        if s.function == function and s.testing == testing and s.label == label
    ]


def _report_only(
    experiment: SweepExperiment,
    repo: Repository,
    sweep_id: str | None,
    testing: bool,
    label: str | None = None,
) -> SweepResult:
    """Results of a stored sweep (its latest attempt per configuration), and the report."""
    fn_label = FunctionRef.of(experiment).label
    if sweep_id:
        record = find_sweep(repo, sweep_id)
    else:
        found = _matching_sweeps(repo, experiment.name, fn_label, testing, label)
        if not found:
            from ..errors import SweepNotFound

            raise SweepNotFound(f"(none yet for experiment {experiment.name!r})")
        record = found[0]
    results = results_of(record)
    verdict, error = run_report_safely(experiment, results)
    if verdict is not None or error is not None:
        lock = sweep_lock(repo, record.sweep_id)
        try:
            record = SweepRecord.load(repo, record.sweep_id)
            record.verdict = {"verdict": verdict, "error": error, "at": now()}
            record.save(repo)
        finally:
            lock.release()
    progress = Progress(total=len(results))
    return SweepResult(
        sweep_id=record.sweep_id,
        results=results,
        status=record.status,
        verdict=verdict,
        progress=progress,
        report_error=error,
        store=str(repo.path),
    )


def results_of(record: SweepRecord) -> ResultSet:
    """The result set of a stored sweep: the latest attempt of each planned configuration."""
    items = []
    for entry in record.configs:
        latest = record.latest(entry["config_hash"])
        items.append(
            Result(
                name=entry["name"],
                config=Config(entry["config"]),
                status=latest.status if latest else "not run",
                position=tuple(entry["position"]),
                experiment_id=latest.experiment_id if latest else None,
                result=latest.result if latest else None,
                error=latest.error if latest else None,
                metrics=latest.metrics if latest else {},
                cached=True,
                parent_experiment=latest.parent_experiment if latest else None,
                duration=latest.duration if latest else None,
            )
        )
    return ResultSet(items, record.shape if items else (0,))
