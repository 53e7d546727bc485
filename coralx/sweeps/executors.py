"""Where configurations run: the :class:`Executor` interface and its four implementations.

==============  =========  ==========================================================
executor        isolation  how
==============  =========  ==========================================================
``subprocess``  strong     a fresh interpreter per configuration (the default)
``fork``        strong     ``workers`` forked processes, reused; same module state
``inline``      none       in this process, one at a time: for debugging
``ray``         strong     Ray tasks, locally or on a cluster (``ray://host:10001``)
==============  =========  ==========================================================

With ``subprocess``, ``fork`` and ``ray`` an exception, ``os._exit`` or a segfault fails that
configuration alone. A custom executor subclasses :class:`Executor` and implements
:meth:`Executor.run`, usually by calling :func:`coralx.sweeps.execute_task` somewhere:

>>> class Local(Executor):
...     name = "mine"
...     def run(self, task):
...         return execute_task(task)
>>> train.run(executor=Local())
"""

from __future__ import annotations

import abc
import collections
import contextlib
import functools
import marshal
import os
import queue
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any

from ..errors import CoralxError, InvalidValue, MissingDependency
from .task import FunctionRef, Outcome, Task, crash_outcome, read_tail

__all__ = [
    "EXECUTORS",
    "Executor",
    "ForkExecutor",
    "InlineExecutor",
    "RayExecutor",
    "SubprocessExecutor",
    "get_executor",
]


Callback = Callable[[Task], None]
#: The status of a task an executor took but never started (the sweep was cancelled first).
NOT_STARTED = "not started"


class Executor(abc.ABC):
    """Runs tasks. The runner calls :meth:`start` once, then :meth:`run_all`, which by default
    calls :meth:`run` from up to ``workers`` threads at once; :meth:`cancel` on Ctrl-C;
    :meth:`shutdown` at the end. A subclass must implement :meth:`run` and may override
    :meth:`run_all` when it can dispatch more cheaply than a thread per task."""

    #: The name used on the command line and in records.
    name: str = "custom"
    #: At most this many tasks at once (None: as many as ``workers``).
    max_workers: int | None = None
    #: Runs tasks in this very process (then one at a time, in the calling thread).
    in_process: bool = False
    #: Runs tasks in a copy of this process (fork): they need not be told ``sys.path``.
    shares_memory: bool = False

    def start(self, workers: int) -> None:  # noqa: B027 - an optional hook, empty by default
        """Prepare to run up to ``workers`` tasks at once."""

    @abc.abstractmethod
    def run(self, task: Task) -> Outcome:
        """Run one task to its end and return its outcome; never raise for the task's own
        failure (return a failed Outcome instead)."""

    def cancel(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Ask running tasks to stop (Ctrl-C): they should end as ``cancelled``."""

    def shutdown(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Release workers and connections."""

    def run_all(
        self,
        tasks: Iterable[Task],
        workers: int,
        *,
        on_start: Callback | None = None,
        tick: Callable[[], None] | None = None,
    ) -> Iterator[tuple[Task, Outcome]]:
        """Run ``tasks`` (taken from the iterable only when a worker is free), up to
        ``workers`` at once; yield ``(task, outcome)`` as each ends. ``tick`` is called about
        four times a second while waiting. On Ctrl-C no new task starts, the running ones are
        cancelled and their outcomes yielded, then KeyboardInterrupt is raised."""
        if self.in_process:
            yield from _run_in_process(self, tasks, on_start)
            return
        pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="coralx")
        done: queue.SimpleQueue[tuple[Task, Future[Outcome]]] = queue.SimpleQueue()
        source = iter(tasks)
        running = 0
        interrupted = False
        try:
            while True:
                while running < workers and not interrupted:
                    task = next(source, None)
                    if task is None:
                        break
                    if on_start is not None:
                        on_start(task)
                    future = pool.submit(self.run, task)
                    future.add_done_callback(functools.partial(_put_done, done, task))
                    running += 1
                if not running:
                    break
                try:
                    task, future = done.get(timeout=0.25)
                except queue.Empty:
                    if tick is not None:
                        tick()
                    continue
                except KeyboardInterrupt:
                    interrupted = True
                    self.cancel()
                    continue
                running -= 1
                yield task, _future_outcome(task, future)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if interrupted:
            raise KeyboardInterrupt

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def _put_done(
    done: queue.SimpleQueue[tuple[Task, Future[Outcome]]], task: Task, future: Future[Outcome]
) -> None:
    done.put((task, future))


def _run_in_process(
    executor: Executor, tasks: Iterable[Task], on_start: Callback | None
) -> Iterator[tuple[Task, Outcome]]:
    for task in tasks:
        if on_start is not None:
            on_start(task)
        outcome = executor.run(task)
        yield task, outcome
        if outcome.status == "cancelled":
            raise KeyboardInterrupt


def _future_outcome(task: Task, future: Future[Outcome]) -> Outcome:
    try:
        return future.result()
    except BaseException as exc:  # an executor bug must not lose the sweep's bookkeeping
        import traceback

        return Outcome(
            status="failed",
            error={
                "type": type(exc).__name__,
                "message": f"the executor failed: {exc}",
                "traceback": traceback.format_exc(),
            },
            experiment_id=task.experiment_id,
            crashed=True,
        )


# -- inline ----------------------------------------------------------------------------------


class InlineExecutor(Executor):
    """In the calling process and thread, one configuration at a time; no isolation (for
    debugging: a breakpoint in the function works)."""

    name = "inline"
    max_workers = 1
    in_process = True
    shares_memory = True

    def run(self, task: Task) -> Outcome:
        from ._child import execute_task

        return execute_task(task, prefer_local=True)


# -- subprocess ------------------------------------------------------------------------------


class _Tee(threading.Thread):
    """Copy a child's pipe to our stream, keeping the tail."""

    def __init__(self, source: IO[bytes], sink: IO[str], prefix: str) -> None:
        super().__init__(daemon=True)
        self.source, self.sink, self.prefix = source, sink, prefix
        self.tail: collections.deque[bytes] = collections.deque(maxlen=200)

    def run(self) -> None:
        for line in iter(self.source.readline, b""):
            self.tail.append(line)
            self.sink.write(self.prefix + line.decode("utf-8", errors="replace"))
            self.sink.flush()

    def text(self, limit: int = 4000) -> str:
        return b"".join(self.tail)[-limit:].decode("utf-8", errors="replace")


_CHILD_MAIN = "import sys; from coralx.sweeps._child import main; sys.exit(main())"


class SubprocessExecutor(Executor):
    """A fresh Python interpreter per configuration (the default).

    The child imports the function by reference (its module, or the script file), runs it and
    writes its outcome to a file; its stdout and stderr go to log files (or stream to the
    terminal with ``stream=True``, ``-s``). A child that dies is reported with its exit
    status or signal and the tail of its stderr.
    """

    name = "subprocess"

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()

    def run(self, task: Task) -> Outcome:
        with _task_files(task) as files:
            with open(files["job"], "wb") as f:
                f.write(marshal.dumps(task.to_dict()))
            env = dict(os.environ, PYTHONFAULTHANDLER="1")
            if "pythonhashseed" in task.seeds:
                env["PYTHONHASHSEED"] = str(task.seeds["pythonhashseed"])
            # -c rather than -m: runpy would import importlib.util, contextlib, functools...
            cmd = [self.python, "-c", _CHILD_MAIN, files["job"], files["outcome"]]
            start = time.monotonic()
            if task.stream:
                returncode, tail = self._run_streaming(cmd, env, task.name)
            else:
                returncode, tail = self._run_captured(cmd, env, files)
            return _read_outcome(task, files["outcome"], returncode, tail, start)

    def _popen(self, cmd: list[str], env: dict[str, str], **kw: Any) -> subprocess.Popen[bytes]:
        # Its own session: Ctrl-C reaches the parent only, which then cancels each child once.
        proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, start_new_session=True, **kw
        )
        with self._lock:
            self._procs.add(proc)
        return proc

    def _wait(self, proc: subprocess.Popen[bytes]) -> int:
        try:
            return proc.wait()
        finally:
            with self._lock:
                self._procs.discard(proc)

    def _run_captured(
        self, cmd: list[str], env: dict[str, str], files: dict[str, str]
    ) -> tuple[int, str]:
        with open(files["stdout"], "ab") as out, open(files["stderr"], "ab") as err:
            proc = self._popen(cmd, env, stdout=out, stderr=err)
            returncode = self._wait(proc)
        return returncode, read_tail(files["stderr"])

    def _run_streaming(self, cmd: list[str], env: dict[str, str], name: str) -> tuple[int, str]:
        proc = self._popen(cmd, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        tees = [
            _Tee(proc.stdout, sys.stdout, f"[{name}] "),
            _Tee(proc.stderr, sys.stderr, f"[{name}] "),
        ]
        for tee in tees:
            tee.start()
        returncode = self._wait(proc)
        for tee in tees:
            tee.join()
        return returncode, tees[1].text()

    def cancel(self) -> None:
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)

    def shutdown(self) -> None:
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()


@contextlib.contextmanager
def _task_files(task: Task) -> Any:
    """Paths for a task's job, outcome and logs: logs in ``task.log_dir`` when the runner gives
    one (kept), everything else in a temporary folder (removed)."""
    with tempfile.TemporaryDirectory(prefix="coralx-task-") as tmp:
        logs = task.log_dir or tmp
        os.makedirs(logs, exist_ok=True)
        stem = task.experiment_id or f"task{task.index}"
        yield {
            "job": os.path.join(tmp, "job.json"),
            "outcome": os.path.join(tmp, "outcome.json"),
            "stdout": os.path.join(logs, f"{stem}.out"),
            "stderr": os.path.join(logs, f"{stem}.err"),
        }


def _read_outcome(task: Task, path: str, returncode: int, tail: str, start: float) -> Outcome:
    try:
        with open(path, "rb") as f:
            outcome = Outcome.from_dict(marshal.loads(f.read()))
    except (OSError, ValueError, EOFError, TypeError):
        return crash_outcome(task, returncode, tail, time.monotonic() - start)
    if outcome.error is not None and tail:
        outcome.error.setdefault("stderr_tail", tail)
    return outcome


# -- fork ------------------------------------------------------------------------------------


# The parent's ends of every live worker's pipes: a new fork closes them, or it would hold
# another worker's task pipe open and that worker would never see the end of its input.
_PARENT_FDS: set[int] = set()


def _frame(data: Any) -> bytes:
    """One message on a worker's pipe: its length (4 bytes) and the plain data in ``marshal``
    format (built in, and several times faster than JSON for what tasks and outcomes hold;
    both ends are the same interpreter)."""
    body = marshal.dumps(data)
    return len(body).to_bytes(4, "little") + body


def _unframe(buffer: bytes) -> tuple[list[bytes], bytes]:
    """The complete messages at the start of ``buffer``, and what is left of it."""
    messages = []
    at = 0
    while len(buffer) - at >= 4:
        size = int.from_bytes(buffer[at : at + 4], "little")
        if len(buffer) - at - 4 < size:
            break
        messages.append(buffer[at + 4 : at + 4 + size])
        at += 4 + size
    return messages, buffer[at:]


class _ForkWorker:
    """A forked process serving tasks over a pair of pipes, one message (:func:`_frame`) per
    task or outcome."""

    def __init__(self) -> None:
        task_r, task_w = os.pipe()
        result_r, result_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: serve until the parent closes the pipe
            os.close(task_w)
            os.close(result_r)
            for fd in _PARENT_FDS:
                with contextlib.suppress(OSError):
                    os.close(fd)
            code = 1
            try:
                os.setsid()  # Ctrl-C reaches the parent, which cancels tasks one by one
                _serve(task_r, result_w)
                code = 0
            finally:
                os._exit(code)
        os.close(task_r)
        os.close(result_w)
        self._fds = (task_w, result_r)
        _PARENT_FDS.update(self._fds)
        self.pid = pid
        self.busy = False
        self.tasks_done = 0
        self._buffer = b""
        self._last_sent: dict[str, Any] = {}

    @property
    def result_fd(self) -> int:
        return self._fds[1]

    def send(self, tasks: list[Task]) -> bool:
        """Send tasks (one write); False if the worker is gone. Each is sent as the fields
        that differ from the task sent before it (most are the same for every task).

        "The same" is the same object (the runner shares them between tasks), or for the
        function reference equal strings: never mere equality, for which 1, 1.0 and True
        (or configs holding them) would pass as one another."""
        frames = []
        last = self._last_sent
        for task in tasks:
            data = task.to_dict()
            delta = {k: v for k, v in data.items() if k not in last or last[k] is not v}
            if "fn" in delta and last.get("fn") == delta["fn"]:
                del delta["fn"]  # qualname, module, file, key: strings or None
            last = data
            frames.append(_frame(delta))
        self._last_sent = last
        payload = b"".join(frames)
        try:
            while payload:
                payload = payload[os.write(self._fds[0], payload) :]
        except OSError:
            return False
        return True

    def receive(self) -> tuple[list[bytes], bool]:
        """The complete outcome messages that have arrived (call when the pipe is readable),
        and whether the worker is still there (False once its end of the pipe is closed)."""
        try:
            chunk = os.read(self._fds[1], 1 << 16)
        except OSError:
            chunk = b""
        if not chunk:
            return [], False
        messages, self._buffer = _unframe(self._buffer + chunk)
        return messages, True

    def reap(self) -> int | None:
        """Close the pipes and collect the process; its return code (negative: a signal)."""
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        _PARENT_FDS.difference_update(self._fds)
        try:
            _pid, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            return None
        return os.waitstatus_to_exitcode(status)


def _serve(task_r: int, result_w: int) -> None:
    from ._child import install_interrupt_guard, wait_durable

    install_interrupt_guard()
    try:
        _serve_tasks(task_r, result_w)
    finally:
        wait_durable()  # the worker leaves with os._exit: no exit handler fsyncs its records


def _serve_tasks(task_r: int, result_w: int) -> None:
    from ._child import execute_task

    cancelled = False
    fields: dict[str, Any] = {}
    fn: FunctionRef | None = None
    buffer = b""
    while True:
        chunk = os.read(task_r, 1 << 16)
        if not chunk:
            return  # the parent closed the pipe: no more tasks
        messages, buffer = _unframe(buffer + chunk)
        for message in messages:
            delta = marshal.loads(message)
            if "fn" in delta:
                fn = FunctionRef(**delta.pop("fn"))
            fields.update(delta)
            assert fn is not None
            task = Task(fn, **fields)
            if cancelled:  # queued behind a cancelled task: never started
                outcome = Outcome(NOT_STARTED, experiment_id=task.experiment_id)
            else:
                _redirect(task)
                try:
                    outcome = execute_task(task, prefer_local=True)
                except KeyboardInterrupt:
                    outcome = Outcome("cancelled", error={"type": "KeyboardInterrupt"})
                sys.stdout.flush()
                sys.stderr.flush()
                cancelled = outcome.status == "cancelled"
            _write_all(result_w, _frame(outcome.to_dict()))


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


_redirected_to: list[str] = []


def _redirect(task: Task) -> None:
    """Point fds 1 and 2 of this worker at the task's log files (left as they are when
    streaming), with fresh ``sys.stdout``/``sys.stderr`` objects: the parent's may hold locks
    taken by other threads at the moment of the fork. A tracked task has its own files (named
    by its experiment id); otherwise the worker keeps one pair, redirected once."""
    if task.stream or not task.log_dir:
        return
    stem = os.path.join(task.log_dir, _log_stem(task, os.getpid()))
    if _redirected_to and _redirected_to[-1] == stem:
        return
    os.makedirs(task.log_dir, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    for fd, suffix in ((1, ".out"), (2, ".err")):
        target = os.open(stem + suffix, flags, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115 - lives with the worker
    sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
    # A crash's Python stack goes to the run's log too (as in a subprocess child), not to a
    # file the parent had faulthandler write to (pytest's copy of the terminal, say).
    import faulthandler

    faulthandler.enable(file=sys.stderr)
    _redirected_to.append(stem)


def _log_stem(task: Task, worker_pid: int) -> str:
    return task.experiment_id or f"worker{worker_pid}"


class ForkExecutor(Executor):
    """``workers`` processes forked from this one (Unix), reused from one configuration to the
    next, so a configuration starts in a fraction of a millisecond with the parent's module
    state. A worker that dies fails only the configuration it was running and is replaced.
    ``max_tasks_per_worker=1`` gives each configuration a fresh fork instead."""

    name = "fork"
    shares_memory = True

    #: At most this many tasks queued at a worker ahead of time, while tasks are short.
    prefetch = 16
    #: Tasks are queued ahead only while they take less than this (seconds), and only as
    #: many as take about this long: a task queued behind a long one would wait while
    #: another worker might be free.
    QUEUED_TIME = 0.05

    def __init__(self, max_tasks_per_worker: int | None = None) -> None:
        if not hasattr(os, "fork"):
            raise InvalidValue("the fork executor needs a Unix system; use 'subprocess'")
        self.max_tasks_per_worker = max_tasks_per_worker
        self._idle: queue.SimpleQueue[_ForkWorker] = queue.SimpleQueue()
        self._all: set[_ForkWorker] = set()
        self._lock = threading.Lock()
        self._started = False
        # A running estimate of how long a task takes (seconds), for the queue depth.
        self._typical: float | None = None

    def start(self, workers: int) -> None:
        # What a worker runs tasks with is imported here, once, rather than in every worker.
        from . import _child  # noqa: F401

        # Fork before any thread of ours exists, so the workers inherit no held locks.
        for _ in range(max(1, workers)):
            self._add_worker()
        self._started = True

    def _add_worker(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        worker = _ForkWorker()
        with self._lock:
            self._all.add(worker)
        self._idle.put(worker)

    def run(self, task: Task) -> Outcome:
        for _task, outcome in self.run_all([task], 1):
            return outcome
        raise RuntimeError("the fork executor returned no outcome")

    def run_all(
        self,
        tasks: Iterable[Task],
        workers: int,
        *,
        on_start: Callback | None = None,
        tick: Callable[[], None] | None = None,
    ) -> Iterator[tuple[Task, Outcome]]:
        """One thread hands tasks to the workers and waits on all their pipes at once
        (``selectors``): no thread or future per configuration. Each worker gets its next task
        before it finishes the current one (``prefetch``), so it never waits for this process;
        when a worker dies, the task it was running fails and the ones queued behind it go
        to another worker."""
        if not self._started:
            self.start(workers)
        workers_now: list[_ForkWorker] = []
        while True:
            try:
                workers_now.append(self._idle.get_nowait())
            except queue.Empty:
                break
        inflight: dict[_ForkWorker, collections.deque[tuple[Task, float]]] = {
            w: collections.deque() for w in workers_now
        }
        retry: collections.deque[Task] = collections.deque()
        source = iter(tasks)
        exhausted = interrupted = False
        with selectors.DefaultSelector() as sel:
            for worker in workers_now:
                sel.register(worker.result_fd, selectors.EVENT_READ, worker)
            try:
                while True:
                    if not interrupted:
                        exhausted = self._feed(inflight, retry, source, exhausted, on_start)
                    if not any(inflight.values()):
                        break
                    try:
                        events = sel.select(timeout=0.25)
                    except KeyboardInterrupt:
                        interrupted = True
                        self.cancel()
                        continue
                    if not events and tick is not None:
                        tick()
                    for key, _mask in events:
                        worker = key.data
                        lines, alive = worker.receive()
                        for line in lines:
                            task, started = inflight[worker].popleft()
                            worker.tasks_done += 1
                            outcome = self._outcome(task, line, worker.pid)
                            self._observe(outcome.duration)
                            yield task, outcome
                        retire = self.max_tasks_per_worker and (
                            worker.tasks_done >= self.max_tasks_per_worker
                        )
                        if alive and not retire:
                            worker.busy = bool(inflight[worker])
                            continue
                        sel.unregister(worker.result_fd)
                        queued = inflight.pop(worker)
                        returncode = self._retire(worker)
                        if not alive and queued:  # it died running the first of these
                            task, started = queued.popleft()
                            tail = read_tail(_err_log(task, worker.pid))
                            elapsed = time.monotonic() - started
                            yield task, crash_outcome(task, returncode, tail, elapsed)
                        retry.extend(t for t, _ in queued)
                        fresh = self._replace()
                        inflight[fresh] = collections.deque()
                        sel.register(fresh.result_fd, selectors.EVENT_READ, fresh)
                    if interrupted and retry:
                        for task in retry:
                            yield task, Outcome(NOT_STARTED, experiment_id=task.experiment_id)
                        retry.clear()
            finally:
                for worker in inflight:
                    self._idle.put(worker)
        if interrupted:
            raise KeyboardInterrupt

    def _feed(
        self,
        inflight: dict[_ForkWorker, collections.deque[tuple[Task, float]]],
        retry: collections.deque[Task],
        source: Iterator[Task],
        exhausted: bool,
        on_start: Callback | None,
    ) -> bool:
        """Top every worker up to its queue depth; return whether the source is empty.

        Tasks are queued ahead at a worker only while they are short (a task queued behind a
        long one would wait while another worker might be free), and never for a worker
        retired after N tasks (it must not start one more)."""
        depth = self._depth()
        for worker, queued in inflight.items():
            if len(queued) > depth // 2:
                continue  # topped up in batches, when half of what is queued is done
            batch: list[Task] = []
            while len(queued) + len(batch) < depth:
                if retry:
                    task = retry.popleft()
                elif exhausted:
                    break
                else:
                    got = next(source, None)
                    if got is None:
                        exhausted = True
                        break
                    task = got
                    if on_start is not None:
                        on_start(task)
                batch.append(task)
            if not batch:
                continue
            if worker.send(batch):
                now = time.monotonic()
                queued.extend((task, now) for task in batch)
                worker.busy = True
            else:
                retry.extendleft(reversed(batch))  # the worker is gone: its pipe reports it
        return exhausted

    def _depth(self) -> int:
        """How many tasks to keep queued at a worker: as many as take about ``QUEUED_TIME``
        (at most ``prefetch``), judged by the tasks so far; one while that is unknown, or
        when the worker is retired after N tasks (it must not start one more)."""
        typical = self._typical
        if self.max_tasks_per_worker or typical is None or typical >= self.QUEUED_TIME:
            return 1
        return max(2, min(self.prefetch, int(self.QUEUED_TIME / max(typical, 1e-6))))

    def _observe(self, duration: float) -> None:
        typical = self._typical
        self._typical = duration if typical is None else 0.8 * typical + 0.2 * duration

    def _outcome(self, task: Task, message: bytes, worker_pid: int) -> Outcome:
        outcome = Outcome.from_dict(marshal.loads(message))
        if outcome.error is not None and task.log_dir:
            outcome.error.setdefault("stderr_tail", read_tail(_err_log(task, worker_pid)))
        return outcome

    def _replace(self) -> _ForkWorker:
        fresh = _ForkWorker()
        with self._lock:
            self._all.add(fresh)
        return fresh

    def _retire(self, worker: _ForkWorker) -> int | None:
        with self._lock:
            self._all.discard(worker)
        return worker.reap()

    def cancel(self) -> None:
        with self._lock:
            busy = [w for w in self._all if w.busy]
        for worker in busy:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGINT)

    def shutdown(self) -> None:
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            if worker.busy:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
            worker.reap()
        self._started = False


def _err_log(task: Task, worker_pid: int) -> str | None:
    if not task.log_dir:
        return None
    return os.path.join(task.log_dir, _log_stem(task, worker_pid) + ".err")


# -- ray -------------------------------------------------------------------------------------


class RayExecutor(Executor):
    """Ray tasks: a local Ray instance (``address=None``), an existing cluster (``"auto"``), or
    a remote one (``"ray://host:10001"``). Needs ``pip install 'coralx[ray]'``. The store
    must be reachable from the workers (a shared file system), unless ``remote`` names a
    remote (``s3://bucket/prefix`` or a folder all reach, with ``endpoint_url`` for S3): then
    each worker runs into a store of its own and pushes each run there, and the driver
    fetches it. ``runtime_env``, ``num_cpus`` and ``num_gpus`` pass through to Ray."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        runtime_env: dict[str, Any] | None = None,
        num_cpus: float = 1,
        num_gpus: float = 0,
        init_kwargs: dict[str, Any] | None = None,
        remote: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise MissingDependency("Ray", "the ray executor", "ray")
        self.address = address
        self.remote = remote
        self.endpoint_url = endpoint_url
        self._fetch_lock = threading.Lock()
        self.runtime_env = runtime_env
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.init_kwargs = dict(init_kwargs or {})
        self._owns_ray = False
        self._remote: Any = None
        self._refs: set[Any] = set()
        self._lock = threading.Lock()

    def start(self, workers: int) -> None:
        import ray

        from ._child import execute_task_dict

        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address:
                kwargs["address"] = self.address
            else:
                kwargs["num_cpus"] = max(1, workers)
            if self.runtime_env:
                kwargs["runtime_env"] = self.runtime_env
            kwargs.update(self.init_kwargs)
            ray.init(**kwargs)
            self._owns_ray = True
        if self.remote is not None:
            from ._remote_worker import execute_and_push

            fn: Any = ray.remote(max_retries=0)(execute_and_push)
        else:
            fn = ray.remote(max_retries=0)(execute_task_dict)
        self._remote = fn.options(num_cpus=self.num_cpus, num_gpus=self.num_gpus)

    def run(self, task: Task) -> Outcome:
        import ray

        if self._remote is None:
            self.start(1)
        start = time.monotonic()
        if self.remote is not None:
            ref = self._remote.remote(task.to_dict(), self.remote, self.endpoint_url)
        else:
            ref = self._remote.remote(task.to_dict())
        with self._lock:
            self._refs.add(ref)
        try:
            outcome = Outcome.from_dict(ray.get(ref))
            if self.remote is not None and task.repo is not None and not outcome.crashed:
                try:
                    self._fetch(task.repo)
                except CoralxError as exc:
                    outcome.status = "failed"
                    outcome.error = {"type": type(exc).__name__, "message": str(exc)}
            return outcome
        except ray.exceptions.TaskCancelledError:
            return Outcome("cancelled", error={"type": "Cancelled", "message": "cancelled"})
        except ray.exceptions.RayError as exc:
            outcome = crash_outcome(task, None, str(exc)[-4000:], time.monotonic() - start)
            assert outcome.error is not None
            outcome.error["type"] = type(exc).__name__
            return outcome
        finally:
            with self._lock:
                self._refs.discard(ref)

    def _fetch(self, store: str) -> None:
        """Bring the run a worker pushed into the driver's store (one fetch at a time)."""
        from ..remote import add_remote, list_remotes
        from ..repository import Repository

        with self._fetch_lock:
            repo = Repository(store)
            name = _remote_name(self.remote or "")
            if not any(r["name"] == name for r in list_remotes(repo)):
                add_remote(repo, name, self.remote or "", self.endpoint_url)
            repo.fetch(name)

    def cancel(self) -> None:
        import ray

        with self._lock:
            refs = list(self._refs)
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref)

    def shutdown(self) -> None:
        if self._owns_ray:
            import ray

            ray.shutdown()
            self._owns_ray = False


def _remote_name(url: str) -> str:
    """The driver's name for a sweep's remote: ``sweep-`` and a short hash of its URL."""
    import hashlib

    return "sweep-" + hashlib.blake2b(url.encode(), digest_size=4).hexdigest()


EXECUTORS: dict[str, type[Executor]] = {
    "inline": InlineExecutor,
    "fork": ForkExecutor,
    "subprocess": SubprocessExecutor,
    "ray": RayExecutor,
}


def get_executor(spec: str | Executor | None = None) -> Executor:
    """An executor from a name (``"subprocess"``, ``"fork"``, ``"inline"``, ``"ray"``,
    ``"ray:auto"``, ``"ray://host:10001"``) or an :class:`Executor` instance (returned as is).
    Raises before anything runs for an unknown name, or for Ray when it is not installed."""
    if spec is None:
        return SubprocessExecutor()
    if isinstance(spec, Executor):
        return spec
    if isinstance(spec, type) and issubclass(spec, Executor):
        return spec()
    if not isinstance(spec, str):
        raise InvalidValue(f"an executor is a name or an Executor instance, not {spec!r}")
    if spec.startswith("ray://"):
        return RayExecutor(address=spec)
    if spec.startswith("ray:"):
        return RayExecutor(address=spec[len("ray:") :])
    cls = EXECUTORS.get(spec)
    if cls is None:
        names = ", ".join(sorted(EXECUTORS))
        raise InvalidValue(
            f"unknown executor {spec!r}; use one of {names}, 'ray:<address>', "
            "or pass an Executor instance"
        )
    return cls()
