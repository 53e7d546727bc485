"""``@pyexp.experiment``: pyexp's experiment decorator, its ``run()`` and its command line, on
coralx's sweep engine.

Settings come, highest first, from the command line, then ``run(...)``'s arguments, then the
decorator's (pyexp's priority). The output folder is pyexp's:
``<output_dir>/<name>/<timestamp>/<config name>-<config hash>/`` (no ``<timestamp>`` level with
``timestamp=False``), handed to the function as ``config.out``. A timestamp names a coralx
sweep: running again with ``--timestamp T`` continues that sweep (completed configurations are
skipped, failed ones rerun as children of the failed run); a new timestamp starts a new one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..sweeps.config import Config

if TYPE_CHECKING:
    from ..repository import Repository
    from ..sweeps.results import ResultSet

__all__ = ["Experiment", "build_parser", "experiment"]

TIMESTAMP_FORMAT = "%Y-%m-%d_%H-%M-%S"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """pyexp's command line (its table of CLI arguments)."""
    p = argparse.ArgumentParser(prog=prog, description="Run this experiment's configurations.")
    p.add_argument("--name", help="override the experiment name")
    p.add_argument("--executor", help="subprocess (default), fork, inline, ray, ray:<address>")
    p.add_argument("--output-dir", dest="output_dir", help="override the output directory")
    p.add_argument(
        "--no-timestamp", dest="no_timestamp", action="store_true", help="no timestamp folders"
    )
    p.add_argument("--timestamp", help="continue or rerun the run with this timestamp folder")
    p.add_argument("--report", action="store_true", help="only report from the cache")
    p.add_argument("--rerun", action="store_true", help="re-run all experiments, ignore cache")
    p.add_argument(
        "-s",
        "--capture=no",
        dest="stream",
        action="store_true",
        help="show each experiment's output instead of a progress bar",
    )
    return p


class _Call:
    """The engine's function for a pyexp experiment: ``fn(config)`` with ``config.out`` set,
    and the returned dict also written as ``result.json`` in that folder."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        from ..sweeps.experiment import wraps

        self.fn = fn
        wraps(self, fn)

    def __call__(self, config: Mapping[str, Any], run: Any) -> Any:
        cfg = Config(config)
        out = run.out
        dict.__setitem__(cfg, "out", out)  # a Path, not config data: kept out of the hash
        value = self.fn(cfg)
        _write_result(out / "result.json", value)
        return value


def _write_result(path: Path, value: Any) -> None:
    from .._fs import atomic_write
    from ..sweeps.config import _unwrap

    try:
        text = json.dumps(_unwrap(value), indent=1, allow_nan=False)
    except (TypeError, ValueError):
        return  # the engine reports a result JSON cannot hold; nothing to mirror here
    atomic_write(path, text)


class Experiment:
    """What ``@pyexp.experiment`` makes of a function."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        executor: Any = "subprocess",
        timestamp: bool | str = True,
        output_dir: str | os.PathLike[str] = "out",
        **settings: Any,
    ) -> None:
        from ..sweeps.experiment import wraps

        wraps(self, fn)
        self.fn = fn
        self.name = name or fn.__name__
        self.executor = executor
        self.timestamp = timestamp
        self.output_dir = output_dir
        self.settings = settings  # coralx's own experiment settings (tags, metric, repo, ...)
        self._configs_fn: Callable[[], Any] | None = None
        self._report_fn: Callable[[Any], Any] | None = None

    def configs(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        """Register the function that returns the configurations."""
        self._configs_fn = fn
        return fn

    def report(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Register the function that receives the results (a Tensor in the sweep's shape)."""
        self._report_fn = fn
        return fn

    def __call__(self, config: Mapping[str, Any]) -> Any:
        return self.fn(Config(config))

    def run(
        self,
        configs: Callable[[], Any] | Any = None,
        report: Callable[[Any], Any] | None = None,
        executor: Any = None,
        output_dir: str | os.PathLike[str] | None = None,
        timestamp: bool | str | None = None,
        name: str | None = None,
        argv: Sequence[str] | None = None,
    ) -> ResultSet:
        """Run every configuration not already done; then the report. Returns the results."""
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        name = args.name or name or self.name
        chosen = args.executor or (executor if executor is not None else self.executor)
        out_root = Path(args.output_dir or output_dir or self.output_dir)
        use_ts: bool | str = self.timestamp if timestamp is None else timestamp
        if args.no_timestamp:
            use_ts = False
        repo = _store(self.settings.get("repo"))
        engine = self._engine(name, configs, report)
        fn_label = _label_of(engine)
        stamp, fresh = _timestamp(args.timestamp, use_ts)
        base = (out_root / name).resolve()
        folder = base / stamp if stamp else base
        sweep_id = None
        if args.report and fresh:
            folder, sweep_id = _latest_sweep(repo, name, fn_label, base)
        settings: dict[str, Any] = {
            "executor": _engine_executor(chosen),
            "repo": repo,
            # pyexp caches by folder: the folder is the sweep's identity
            "label": str(folder),
            "output_root": str(folder),
            "by_value": True,
            "rerun": args.rerun,
            "report_only": args.report,
            "stream": args.stream,
            "sweep_id": sweep_id,
        }
        from ..errors import CoralxError
        from ..sweeps import _cli

        try:
            result = _cli._run(engine, settings, {}, quiet=args.stream)
        except CoralxError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(exc.exit_code) from None
        if not args.stream:
            _cli.render_summary(engine, result)
        return _shaped(result.results)

    def _engine(self, name: str, configs: Any, report: Any) -> Any:
        from ..sweeps.experiment import SweepExperiment

        engine = SweepExperiment(_Call(self.fn), name=name, **self.settings_for_engine())
        source = configs if configs is not None else self._configs_fn
        if source is not None:
            engine.configs(source if callable(source) else (lambda: source))
        user_report = report if report is not None else self._report_fn
        if user_report is not None:
            engine.report(lambda results: user_report(_shaped(results)))
        return engine

    def settings_for_engine(self) -> dict[str, Any]:
        return {k: v for k, v in self.settings.items() if k != "repo"}

    def __repr__(self) -> str:
        return f"<pyexp experiment {self.name!r}>"


def experiment(fn: Callable[..., Any] | None = None, **settings: Any) -> Any:
    """``@pyexp.experiment`` or ``@pyexp.experiment(name=..., executor=..., timestamp=...)``."""
    if fn is not None:
        return Experiment(fn, **settings)
    return lambda f: Experiment(f, **settings)


def _shaped(results: ResultSet) -> ResultSet:
    from ..sweeps.results import ResultSet

    return ResultSet(list(results), results.shape, keep_shape=True)


def _engine_executor(spec: Any) -> Any:
    from .executors import to_engine

    return to_engine(spec)


def _label_of(engine: Any) -> str:
    from ..sweeps.task import FunctionRef

    return FunctionRef.of(engine).label


def _timestamp(given: str | None, use_ts: bool | str) -> tuple[str | None, bool]:
    """The timestamp folder's name (None: no such level), and whether it was made just now."""
    if given:
        return _checked_label(given), False
    if isinstance(use_ts, str):
        return _checked_label(use_ts), False
    if use_ts:
        from datetime import datetime

        return datetime.now().strftime(TIMESTAMP_FORMAT), True
    return None, False


def _checked_label(text: str) -> str:
    from ..errors import InvalidName

    if not text or text in (".", "..") or "/" in text or "\\" in text or "\0" in text:
        raise InvalidName("timestamp", text, "a folder name such as 2024-01-25_14-30-00")
    return text


def _latest_sweep(repo: Repository, name: str, fn_label: str, base: Path) -> tuple[Path, str]:
    """The newest sweep of this experiment under ``base`` (what ``--report`` reads when no
    ``--timestamp`` is given)."""
    from ..errors import SweepNotFound
    from ..sweeps.record import list_sweeps

    for record in list_sweeps(repo, name):
        label = record.label or ""
        if record.function == fn_label and not record.testing and label.startswith(str(base)):
            return Path(label), record.sweep_id
    raise SweepNotFound(f"(no run of experiment {name!r} under {base} to report yet)")


def _store(repo: Any) -> Repository:
    """The coralx store at or above the working directory; one is made here if there is none
    (as pyexp makes its ``out/`` folder)."""
    from ..errors import RepositoryNotFound
    from ..repository import Repository

    if isinstance(repo, Repository):
        return repo
    if repo is not None:
        return Repository(repo, init=True)
    try:
        return Repository.discover()
    except RepositoryNotFound:
        return Repository(".", init=True)
