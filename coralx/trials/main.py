"""Running a trials file: ``python file.py`` or ``coralx sweep run file.py``.

A trials file has no main block: ``python file.py`` runs its trials once the module has been
executed. The decorators, used in the ``__main__`` module, register that run with the
interpreter's shutdown (before its thread pools close), so the file runs exactly as written.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CoralxError

if TYPE_CHECKING:
    from ..sweeps.results import Result
    from ..sweeps.runner import Progress, SweepResult
    from .decorators import TrialsFile

__all__ = ["main", "run_at_exit", "run_trials", "trials_in"]

EXIT_INTERRUPTED = 130


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run this file's trials: every combination is a coralx run of one sweep.",
        epilog="Example: python trials.py --stream-all   (MLX_PARALLEL=4 python trials.py)",
    )
    p.add_argument(
        "--stream-all",
        action="store_true",
        help="stream every combination's output (sequential trials); also MLX_STREAM_ALL=1",
    )
    p.add_argument("--rerun", action="store_true", help="run every combination again")
    p.add_argument("--new", action="store_true", help="start a new sweep, reusing nothing")
    p.add_argument("--sweep", dest="sweep_id", metavar="ID", help="continue this sweep")
    p.add_argument("-C", "--repo", metavar="PATH", help="the coralx store (default: found)")
    p.add_argument("--json", dest="as_json", action="store_true", help="print the run dicts")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    return p


def run_trials(
    registry: TrialsFile,
    *,
    stream_all: bool = False,
    rerun: bool = False,
    new: bool = False,
    sweep_id: str | None = None,
    repo: Any = None,
    on_progress: Any = None,
) -> SweepResult:
    """Run the trials of a file as one sweep (from Python; prints nothing)."""
    from ..pycomex._store import store_for
    from ..sweeps.runner import run_sweep

    registry.stream_all = stream_all or os.environ.get("MLX_STREAM_ALL", "") == "1"
    if repo is None:
        file = registry.glob.get("__file__")
        repo = store_for(Path(file).resolve().parent if file else Path.cwd())
    return run_sweep(
        registry.experiment,
        rerun=rerun,
        new=new,
        sweep_id=sweep_id,
        repo=repo,
        on_progress=on_progress,
    )


def main(registry: TrialsFile, argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run the trials, print each combination and the verdicts;
    the exit status (0 when every combination succeeded)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    printer = None if args.quiet or args.as_json else _print_progress
    try:
        result = run_trials(
            registry,
            stream_all=args.stream_all,
            rerun=args.rerun,
            new=args.new,
            sweep_id=args.sweep_id,
            repo=args.repo,
            on_progress=printer,
        )
    except CoralxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    runs = registry.run_dicts(result.results)
    if args.as_json:
        import json

        out = {"sweep_id": result.sweep_id, "results": runs, "verdicts": registry.verdicts}
        print(json.dumps(out, indent=2, default=str))
    elif not args.quiet:
        _print_summary(registry, result, runs)
    for name, detail in registry.verify_errors.items():
        print(f"verification {name} failed:\n{detail}", file=sys.stderr)
    if result.status == "cancelled":
        print(f"cancelled; run again to continue sweep {result.sweep_id}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0 if all(r["success"] for rs in runs.values() for r in rs) else 1


def _print_progress(progress: Progress, result: Result | None) -> None:
    if result is None:
        return
    state = "cached" if result.cached and result.ok else result.status
    took = f" {result.duration:.2f}s" if result.duration and not result.cached else ""
    line = f"[{progress.finished}/{progress.total}] {result.name}: {state}{took}"
    if not result.ok:
        error = result.error or {}
        line += f" ({error.get('type')}: {error.get('message')})"
    print(line, flush=True)


def _print_summary(registry: TrialsFile, result: SweepResult, runs: dict[str, list[Any]]) -> None:
    total = sum(len(r) for r in runs.values())
    ok = sum(1 for rs in runs.values() for r in rs if r["success"])
    print(f"sweep {result.sweep_id}: {ok}/{total} combinations succeeded")
    for name, verdict in registry.verdicts.items():
        print(f"verify {name}: {verdict}")
    if result.verdict:
        print(f"verdict: {result.verdict}")


def trials_in(path: str) -> TrialsFile | None:
    """The trials a file defines (loaded as a module, not run), or None if it has none."""
    from ..sweeps.task import load_script
    from .decorators import REGISTRY, TrialsFile

    module = load_script(path)
    found = getattr(module, REGISTRY, None)
    return found if isinstance(found, TrialsFile) and found.trials else None


def _status_of(registry: TrialsFile) -> int:
    """``main``'s exit status; SystemExit (``--help``, a bad option) and errors included, as
    nothing may escape a shutdown hook."""
    try:
        return main(registry)
    except SystemExit as exc:
        code = exc.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BaseException:
        import traceback

        traceback.print_exc()
        return 1


def run_at_exit(registry: TrialsFile) -> None:
    """Run the trials of the ``__main__`` module once it has been executed (``python file.py``).

    Registered with the threading module's shutdown hooks, which run before the interpreter
    closes its thread pools (plain ``atexit`` would be too late for the runner's pool); a
    module that raised does not run. A non-zero status ends the process with that status."""
    import concurrent.futures.thread  # noqa: F401 - its own shutdown hook must run after ours
    import threading

    file = registry.glob.get("__file__")

    def at_shutdown() -> None:
        if getattr(sys, "last_value", None) is not None:  # the module itself failed
            return
        if file and not registry.glob.get("__file__"):
            # The interpreter drops __main__.__file__ once the script has run: the runner
            # needs it to tell each child which file to load.
            registry.glob["__file__"] = file
        code = _status_of(registry)
        if code:
            sys.stdout.flush()
            sys.stderr.flush()
            import atexit

            atexit._run_exitfuncs()  # os._exit skips them: the records' final syncs
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(at_shutdown)
    else:  # an interpreter without it (not CPython 3.9+): at exit, as late as it gets
        import atexit

        atexit.register(at_shutdown)
