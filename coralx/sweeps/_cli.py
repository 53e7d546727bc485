"""The command line of a sweep script (``python train.py --set lr=0.01 --workers 2``), and its
progress bar. Options given here win over ``train.run(...)`` arguments, which win over the
decorator's settings."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._text import markup_cell
from ..errors import EXIT_INTERRUPTED, EXIT_SWEEP_FAILED, CoralxError, InvalidValue

if TYPE_CHECKING:
    from .experiment import SweepExperiment
    from .results import Result
    from .runner import SweepResult

__all__ = ["build_parser", "main", "parse_overrides"]


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run this sweep: every configuration is a coralx experiment.",
        epilog="Example: python train.py --set lr=0.01 --set model.width=64 --workers 2",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value in every configuration (dots reach nested keys; the "
        "value is read as JSON when it parses, else as text); a key the sweep varies is an "
        "error: use --set-axis",
    )
    p.add_argument(
        "--set-axis",
        dest="axis_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUES",
        help="replace the sweep's axis that sets KEY by these values (a JSON list, or one "
        "value): --set-axis hidden=[32,128]",
    )
    p.add_argument("--executor", help="subprocess (default), fork, inline, ray, ray:<address>")
    p.add_argument("--workers", type=int, help="configurations run at once")
    p.add_argument("--rerun", action="store_true", help="run every configuration again")
    p.add_argument("--report", action="store_true", help="only report the stored results")
    p.add_argument("--testing", action="store_true", help="a quick check: @testing shrinks runs")
    p.add_argument(
        "-s",
        "--capture=no",
        dest="stream",
        action="store_true",
        help="stream each run's output instead of a progress bar",
    )
    p.add_argument("--sweep", dest="sweep_id", metavar="ID", help="continue this sweep")
    p.add_argument("--new", action="store_true", help="start a new sweep, reusing nothing")
    p.add_argument("-C", "--repo", metavar="PATH", help="the coralx store (default: found from .)")
    p.add_argument("--json", dest="as_json", action="store_true", help="print results as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    return p


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["lr=0.01", "model.width=64", "name=x"]`` -> ``{"lr": 0.01, "model.width": 64, ...}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InvalidValue(f"--set and --set-axis take KEY=VALUE, got {item!r}")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        out[key.strip()] = value
    return out


def main(
    experiment: SweepExperiment, argv: Sequence[str] | None, options: Mapping[str, Any]
) -> SweepResult:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    settings = dict(options)
    overrides = dict(settings.pop("overrides", None) or {})
    overrides.update(parse_overrides(args.overrides))
    axes = dict(settings.pop("axis_overrides", None) or {})
    axes.update(parse_overrides(args.axis_overrides))
    if axes:
        settings["axis_overrides"] = axes
    for key in ("executor", "workers", "sweep_id", "repo"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    for flag in ("rerun", "testing", "stream", "new"):
        if getattr(args, flag):
            settings[flag] = True
    if args.report:
        settings["report_only"] = True
    quiet = bool(args.quiet or args.as_json or settings.pop("quiet", False))
    try:
        result = _run(experiment, settings, overrides, quiet=quiet or bool(settings.get("stream")))
    except CoralxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    if args.as_json:
        json.dump(_as_json(result), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    elif not quiet:
        render_summary(experiment, result)
    if result.status == "cancelled":
        print(
            f"cancelled; run again to continue sweep {result.sweep_id}",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_INTERRUPTED)
    if result.status == "failed":
        # So that CI and shell scripts notice; the results are stored all the same.
        raise SweepFailedExit(result)
    return result


class SweepFailedExit(SystemExit):
    """The script's exit (status :data:`~coralx.errors.EXIT_SWEEP_FAILED`) after a sweep in
    which some configuration failed; ``result`` is the sweep's result all the same."""

    def __init__(self, result: SweepResult) -> None:
        super().__init__(EXIT_SWEEP_FAILED)
        self.result = result


def _run(
    experiment: SweepExperiment,
    settings: dict[str, Any],
    overrides: dict[str, Any],
    *,
    quiet: bool,
) -> SweepResult:
    from .runner import run_sweep

    if quiet or settings.get("report_only"):
        return run_sweep(experiment, overrides=overrides, **settings)
    with contextlib.ExitStack() as stack:
        bar: Any = None
        task_id: Any = None

        def on_progress(p: Progress_, _result: Result | None) -> None:
            nonlocal bar, task_id
            if bar is None:
                # Started at the first report, when the plan is known: bad input, or a store
                # that cannot be opened, is an error without a progress bar of 0/None first.
                bar = stack.enter_context(_progress_bar())
                task_id = bar.add_task(experiment.name, total=p.total, counts="")
            bar.update(task_id, total=p.total, completed=p.finished, counts=progress_text(p))
            bar.refresh()

        result = run_sweep(experiment, overrides=overrides, on_progress=on_progress, **settings)
    return result


def _progress_bar() -> Any:
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    # Refreshed by the runner's own loop (no refresh thread): forked workers never inherit a
    # lock held by a rendering thread.
    return Progress(*columns, auto_refresh=False, transient=False)


def progress_text(p: Progress_) -> str:
    """The counts beside the bar; every finished run is counted under one of them."""
    text = (
        f"[green]{p.done} done[/] [red]{p.failed} failed[/] "
        f"[dim]{p.skipped} skipped[/] [cyan]{p.running} running[/]"
    )
    if p.cancelled:
        text += f" [yellow]{p.cancelled} cancelled[/]"
    return text


Progress_ = Any  # the runner's Progress; named apart from rich's


def render_summary(experiment: SweepExperiment, result: SweepResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    metric = experiment.metric
    table = Table(title=f"sweep {result.sweep_id or '(untracked)'}: {experiment.name}")
    table.add_column("configuration")
    table.add_column("status")
    if metric:
        table.add_column(metric, justify="right")
    table.add_column("experiment")
    for r in result.results:
        status = "cached" if r.cached and r.ok else r.status
        style = {"completed": "green", "cached": "dim", "failed": "red"}.get(status, "yellow")
        row = [markup_cell(r.name), f"[{style}]{status}[/]"]
        if metric:
            value = r.value(metric, experiment.mode)
            row.append("" if value is None else f"{value:.4g}")
        row.append(r.experiment_id or "")
        table.add_row(*row)
    console.print(table)
    for r in result.results.failed:
        message = (r.error or {}).get("message") or ""
        console.print(f"[red]{r.name}[/]: {(r.error or {}).get('type')}: {message}")
    if metric:
        best = result.results.best(metric, experiment.mode)
        if best is not None:
            ident = best.experiment_id or ""
            console.print(f"best by {metric} ({experiment.mode}): [bold]{best.name}[/] {ident}")
    if result.verdict:
        console.print(f"report verdict: [bold]{result.verdict}[/]")
    if result.report_error:
        from rich.markup import escape

        console.print(f"[red]the report raised[/] {escape(result.report_error)}")
    if result.created_store:
        console.print(f"[dim]created a coralx store at {result.store}[/]")


def _as_json(result: SweepResult) -> dict[str, Any]:
    return {
        "sweep_id": result.sweep_id,
        "status": result.status,
        "verdict": result.verdict,
        "report_error": result.report_error,
        "counts": result.counts,
        "shape": list(result.results.shape),
        "results": result.results.to_list(),
    }
