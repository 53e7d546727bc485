"""``coralx sweep``: list sweeps, show one, run a sweep script."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import console, echo_json, json_option, markup_cell, open_repo

__all__ = ["sweep"]


@click.group()
def sweep() -> None:
    """Run sweeps and look at them: every configuration of a sweep is an experiment."""


@sweep.command("list")
@click.option("--name", help="Only sweeps of this experiment.")
@json_option
@click.pass_context
def list_(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """List the sweeps in the store, newest first, with their status and counts.

    \b
    Example:
      coralx sweep list
      coralx sweep list --name mnist --json
    """
    from ..sweeps.queries import sweep_summaries

    rows = sweep_summaries(open_repo(ctx), name)
    if as_json:
        echo_json(rows)
        return
    from rich.table import Table

    table = Table()
    for col in ("sweep", "experiment", "status", "shape", "completed", "failed", "verdict"):
        table.add_column(col)
    for r in rows:
        counts = r["counts"]
        table.add_row(
            r["sweep_id"],
            markup_cell(r["name"]) + (" (testing)" if r["testing"] else ""),
            r["status"],
            "x".join(str(n) for n in r["shape"]) or "1",
            str(counts.get("completed", 0)),
            str(counts.get("failed", 0) + counts.get("cancelled", 0)),
            r["verdict"] or "",
        )
    console().print(table if rows else "no sweeps yet; run a sweep script to make one")


@sweep.command("show")
@click.argument("sweep_id")
@json_option
@click.pass_context
def show(ctx: click.Context, sweep_id: str, as_json: bool) -> None:
    """Show a sweep: each configuration with its status, main metric and experiment id.

    SWEEP_ID may be a unique prefix.

    \b
    Example:
      coralx sweep show 0193a4f2
    """
    from ..sweeps.queries import describe_sweep

    info = describe_sweep(open_repo(ctx), sweep_id)
    if as_json:
        echo_json(info)
        return
    from rich.table import Table

    metric = info["metric"]
    title = f"sweep {info['sweep_id']}: {info['name']} ({info['status']})"
    table = Table(title=title)
    for col in ("position", "configuration", "status", metric or "metric", "runs", "experiment"):
        table.add_column(col)
    styles = {"completed": "green", "failed": "red", "cancelled": "yellow"}
    for r in info["rows"]:
        style = styles.get(r["status"], "dim")
        table.add_row(
            ",".join(str(i) for i in r["position"]),
            markup_cell(r["name"]),
            f"[{style}]{r['status']}[/]",
            "" if r["metric"] is None else f"{r['metric']:.4g}",
            str(r["attempts"]),
            r["experiment_id"] or "",
        )
    out = console()
    out.print(table)
    for r in info["rows"]:
        if r["error"]:
            out.print(f"[red]{r['name']}[/]: {r['error']}")
    if info["verdict"]:
        out.print(f"verdict: [bold]{info['verdict']}[/]")
    if info.get("report_error"):
        from rich.markup import escape

        out.print(f"[red]the report raised[/] {escape(info['report_error'])}")


@sweep.command("run", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("file", type=click.Path(exists=True))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--experiment", "experiment", help="Run only the experiment of this name.")
@click.option(
    "--entry",
    metavar="MODULE:FUNCTION",
    help="With a config folder: the function each trial's repeat runs.",
)
@click.pass_context
def run(
    ctx: click.Context,
    file: str,
    args: tuple[str, ...],
    experiment: str | None,
    entry: str | None,
) -> None:
    """Run the sweeps FILE defines, as `python FILE ARGS...` would; or, when FILE is a folder
    of Experiment Manager configs (experiment.yaml, base.yaml, trials.yaml), run every repeat
    of every trial with --entry's function.

    ARGS are the script's own options: --set KEY=VALUE, --executor, --workers, --rerun,
    --report, --testing, -s, --sweep ID, --new, --json. A file of @trial functions
    (coralx.trials) takes --stream-all, --rerun, --new, --sweep ID, --json.

    \b
    Example:
      coralx sweep run train.py --workers 2 --set lr=0.01
      coralx sweep run trials.py --stream-all
      coralx sweep run configs/ --entry mymodule:train --workers 2
    """
    from ..errors import InvalidValue

    repo_path = (ctx.find_root().obj or {}).get("repo_path")
    options = {"repo": repo_path} if repo_path else {}
    if not Path(file).is_dir():
        from ..trials.main import main as run_trials
        from ..trials.main import trials_in

        trials = trials_in(file)
        if trials is not None:  # a file of @trial functions (coralx.trials): its own options
            ctx.exit(run_trials(trials, [*args, *(["--repo", repo_path] if repo_path else [])]))
    if Path(file).is_dir():
        from ..sweeps.folder import run_folder

        if not entry:
            raise InvalidValue(f"{file} is a config folder: name the function with --entry MOD:FN")
        results = [run_folder(file, entry, list(args), **options)]
    else:
        from ..sweeps.queries import run_file

        results = run_file(file, args, experiment=experiment, **options)
    if any(r.status == "failed" for r in results):
        from ..errors import EXIT_SWEEP_FAILED

        ctx.exit(EXIT_SWEEP_FAILED)
