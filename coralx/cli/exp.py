"""``coralx exp``: list, show, compare and manage experiment runs.

``coralx exp list`` is the command people run most, often on thousands of runs: it reads the
SQLite index through the tracker (standard library only) and prints with a small plain-text
renderer, so it never imports rich, pydantic, numpy, dulwich or git. The other commands render
with rich.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._common import cell, console, echo_json, json_option, open_repo

if TYPE_CHECKING:
    from ..experiments import Experiment, ExperimentTracker

__all__ = ["exp", "reindex_command"]

_SPARKS = "▁▂▃▄▅▆▇█"


def _tracker(ctx: click.Context) -> ExperimentTracker:
    from ..experiments import ExperimentTracker

    return ExperimentTracker(open_repo(ctx), capture_code=False)


@click.group()
def exp() -> None:
    """List, inspect, compare and manage experiment runs.

    Every ID may be shortened to any unambiguous prefix.

    \b
    Example:
      coralx exp list --tag bert --status completed
      coralx exp best --metric val_loss --mode min --limit 5
    """


# -- list -----------------------------------------------------------------------------------------


def _parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    from ..records.query import parse_param_pairs

    return parse_param_pairs(pairs)


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M") if value else "-"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    rows = [[cell(c) for c in row] for row in rows]  # a newline in a name stays in its row
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)
    return "\n".join(lines)


_WHERE_HELP = (
    'A filter, e.g. "params.lr < 1e-3 and metrics.val_loss.min <= 0.3 and tags.bert" '
    "(see docs/cli.md, Filters)."
)


@exp.command("list")
@click.option("--where", "where", metavar="FILTER", help=_WHERE_HELP)
@click.option("--tag", "tags", multiple=True, help="Keep runs with this tag (repeatable).")
@click.option("--any-tag", is_flag=True, help="With several --tag: keep runs with any of them.")
@click.option("--status", "statuses", multiple=True, help="pending, running, completed, ...")
@click.option("--branch", help="Keep runs whose code was on this git branch.")
@click.option("--name", help="Keep runs whose name matches this glob, e.g. 'bert-*'.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Params equal to.")
@click.option("--sweep", "sweep_id", help="Keep the runs of this sweep.")
@click.option("--ancestor-of", metavar="REV", help="Keep runs whose code is REV or before it.")
@click.option(
    "--sort",
    "sort",
    multiple=True,
    metavar="KEY",
    help="Sort key, repeatable: -metrics.acc.max, params.lr, created, name; a bare metric "
    "name sorts by its lowest value (-NAME: its highest first).",
)
@click.option("--limit", type=int, help="Show at most this many runs.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="csv: one row per run with params.* and metrics.* columns; json: the records.",
)
@json_option
@click.pass_context
def list_command(
    ctx: click.Context,
    where: str | None,
    tags: tuple[str, ...],
    any_tag: bool,
    statuses: tuple[str, ...],
    branch: str | None,
    name: str | None,
    params: tuple[str, ...],
    sweep_id: str | None,
    ancestor_of: str | None,
    sort: tuple[str, ...],
    limit: int | None,
    fmt: str,
    as_json: bool,
) -> None:
    """List runs, newest first, filtered and sorted.

    \b
    Example:
      coralx exp list --where "params.lr < 1e-3 and tags.bert and status = 'completed'"
      coralx exp list --where "name glob 'bert-*'" --sort -metrics.acc.max --sort params.lr
      coralx exp list --tag bert --format csv > runs.csv
    """
    from ..records.query import parse_sort

    keys = parse_sort(sort)
    runs = _tracker(ctx).list_records(
        where,
        sort=list(sort),
        limit=limit,
        status=list(statuses) or None,
        tags=list(tags) or None,
        tags_match="any" if any_tag else "all",
        branch=branch,
        name=name,
        params=_parse_params(params) or None,
        sweep_id=sweep_id,
        ancestor_of=ancestor_of,
    )
    if as_json or fmt == "json":
        echo_json(runs)
        return
    if fmt == "csv":
        _write_csv(runs)
        return
    if not runs:
        click.echo("no runs match")
        return
    headers = ["id", "name", "status", "created", "branch", "tags"]
    extra = [k.fld for k in keys if k.fld.kind in ("metric", "param")]
    headers.extend(str(f) for f in extra)
    rows = []
    for r in runs:
        created = r.get("created_at") or ""
        when = (
            datetime.fromisoformat(created).astimezone().strftime("%Y-%m-%d %H:%M")
            if created
            else "-"
        )
        row = [r["experiment_id"], r["name"], r["status"], when, r.get("branch") or "-"]
        row.append(",".join(sorted(r.get("tags") or [])) or "-")
        row.extend(_fmt(_field_value(r, f)) for f in extra)
        rows.append(row)
    click.echo(_plain_table(headers, rows))
    click.echo(f"{len(runs)} run{'s' if len(runs) != 1 else ''}")


def _field_value(record: dict[str, Any], fld: Any) -> Any:
    from ..records.query import Leaf, facts

    got = Leaf(fld, "exists")._get(facts(record), 0.0)
    return None if got is None else got[1]


def _write_csv(runs: Sequence[dict[str, Any]]) -> None:
    import csv

    from ..experiments import summary_row

    rows = [summary_row(r) for r in runs]
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(_csv_cell(row.get(c)) for c in columns)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    return value


# -- show -----------------------------------------------------------------------------------------


def sparkline(values: Sequence[float], width: int = 40) -> str:
    """A one-line chart of the finite values (NaN and infinities are skipped)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return ""
    if len(finite) > width:  # average buckets so a long history still fits
        size = len(finite) / width
        finite = [
            sum(chunk) / len(chunk)
            for i in range(width)
            if (chunk := finite[int(i * size) : max(int((i + 1) * size), int(i * size) + 1)])
        ]
    lo, hi = min(finite), max(finite)
    span = hi - lo or 1.0
    return "".join(_SPARKS[min(7, int((v - lo) / span * 7.999))] for v in finite)


def _history_values(run: Experiment, metric: str) -> list[float]:
    if run._journal is None:
        return []
    values, _steps, _times = run._read_journal().select(metric)
    return [float(v) for v in values.tolist()]


@exp.command("show")
@click.argument("experiment_id")
@json_option
@click.pass_context
def show(ctx: click.Context, experiment_id: str, as_json: bool) -> None:
    """Show one run: params, tags, code, and each metric's summary with a sparkline.

    \b
    Example:
      coralx exp show 01a2093a
      coralx exp show 01a2093a --json
    """
    from ..errors import ArtifactNotFound, ChecksumMismatch

    tracker = _tracker(ctx)
    run = tracker.get_or_raise(experiment_id)
    try:
        env = _environment_of(tracker, run)
        env_problem = None
    except (ArtifactNotFound, ChecksumMismatch) as exc:  # show the rest of the run anyway
        env, env_problem = None, f"unreadable: {exc}"
    if as_json:
        echo_json({**run.to_dict(metrics=False), "environment_detail": env})
        return
    from rich.table import Table

    from ._common import markup_cell as escape

    out = console()
    out.print(f"[bold]{escape(run.name)}[/bold]  {run.experiment_id}  ({run.status.value})")
    info = Table(show_header=False, box=None, pad_edge=False)
    info.add_column(style="bold")
    info.add_column(overflow="fold")
    duration = f"{run.duration:.1f}s" if run.duration is not None else "-"
    for key, value in (
        ("description", run.description),
        ("created", _when(run.created_at)),
        ("duration", duration),
        ("tags", ", ".join(run.tags)),
        ("parent", run.parent_experiment),
        ("weights", run.commit_hash or (run.weight_commits[-1] if run.weight_commits else None)),
        ("code", _code_line(run.code)),
        ("notes", run.notes),
        ("error", run.error_message),
        ("host", f"{run.host} pid {run.pid}" if run.host else None),
        ("environment", _environment_line(env) or env_problem),
        ("gpu", _gpu_line(env)),
    ):
        if value:
            info.add_row(key, escape(str(value)))
    out.print(info)
    if run.params:
        params = Table(title="params", title_justify="left", box=None)
        params.add_column("name", style="bold")
        params.add_column("value", overflow="fold")
        for key, value in sorted(run.params.items()):
            params.add_row(escape(key), escape(json.dumps(value)))
        out.print(params)
    # System metrics (system/cpu_percent, ...) in a table of their own, after the run's.
    for title, keep in (("metrics", False), ("system metrics", True)):
        summaries = {
            k: v for k, v in run.metrics_summary.items() if k.startswith("system/") is keep
        }
        if not summaries:
            continue
        table = Table(title=title, title_justify="left", box=None)
        for col in ("metric", "last", "min", "max", "count", "history"):
            table.add_column(
                col, justify="right" if col in ("last", "min", "max", "count") else "left"
            )
        for metric, s in sorted(summaries.items()):
            table.add_row(
                escape(metric),
                _fmt(s.get("last")),
                _fmt(s.get("min")),
                _fmt(s.get("max")),
                str(s.get("count", 0)),
                sparkline(_history_values(run, metric)),
            )
        out.print(table)


def _environment_of(tracker: ExperimentTracker, run: Experiment) -> dict[str, Any] | None:
    return tracker.get_environment(run.experiment_id) if run.environment else None


def _environment_line(env: dict[str, Any] | None) -> str | None:
    if not env:
        return None
    py = env.get("python") or {}
    plat = env.get("platform") or {}
    machine = env.get("machine") or {}
    memory = machine.get("memory_bytes")
    coralx = env.get("coralx") or {}
    parts = [
        f"Python {py.get('version')} ({py.get('implementation')})",
        f"{plat.get('system')} {plat.get('machine')}",
        f"{machine.get('cpu_count')} CPUs" + (f", {memory / 2**30:.1f} GiB" if memory else ""),
        f"{len(env.get('packages') or {})} packages",
        f"coralx {coralx.get('version')}" + (" (editable)" if coralx.get("editable") else ""),
    ]
    return "; ".join(parts)


def _gpu_line(env: dict[str, Any] | None) -> str | None:
    gpu = (env or {}).get("gpu")
    if not gpu or not gpu.get("count"):
        return None
    names = ", ".join(gpu.get("names") or [])
    return f"{gpu['count']} x {names} (CUDA {gpu.get('cuda')}, driver {gpu.get('driver')})"


def _code_line(code: dict[str, Any]) -> str | None:
    if not code or not code.get("commit"):
        return None
    text = f"{code['commit'][:12]} on {code.get('branch') or '(detached)'}"
    if code.get("dirty"):
        text += f", dirty (snapshot {str(code.get('snapshot'))[:12]})"
    return text


# -- compare, best --------------------------------------------------------------------------------


@exp.command("compare")
@click.argument("experiment_ids", nargs=-1, required=True)
@click.option("--metric", "metrics", multiple=True, help="Only these metrics (repeatable).")
@click.option(
    "--mode",
    "modes",
    multiple=True,
    metavar="[METRIC=]min|max",
    help="Which way is better (repeatable): 'max', or 'val_acc=max' for one metric. "
    "Default: guessed from the name (loss, error, perplexity: min; acc, f1, auc: max).",
)
@json_option
@click.pass_context
def compare(
    ctx: click.Context,
    experiment_ids: tuple[str, ...],
    metrics: tuple[str, ...],
    modes: tuple[str, ...],
    as_json: bool,
) -> None:
    """Compare runs side by side: metrics (the best run starred, in each metric's direction)
    and the params that differ.

    \b
    Example:
      coralx exp compare 01a2093a 01a2093b 01a2093c
      coralx exp compare 01a2093a 01a2093b --metric val_acc --mode val_acc=max --json
    """
    from ..errors import InvalidValue

    given: dict[str, str] = {}
    default: str | None = None
    for item in modes:
        metric, sep, mode = item.rpartition("=")
        if mode not in ("min", "max"):
            raise InvalidValue(f"--mode takes min, max or METRIC=min|max, not {item!r}")
        if sep:
            given[metric] = mode
        else:
            default = mode
    tracker = _tracker(ctx)
    if default is not None:
        runs = [tracker.get_or_raise(e) for e in experiment_ids]
        names = list(metrics) or sorted({m for r in runs for m in r.metrics_summary})
        given = {**dict.fromkeys(names, default), **given}
    result = tracker.compare(list(experiment_ids), list(metrics) or None, given or None)
    result["packages"] = _package_differences(tracker, result["ids"])
    if as_json:
        echo_json(result)
        return
    from rich.table import Table

    from ._common import markup_cell as escape

    ids = result["ids"]
    labels = {e["experiment_id"]: e["name"] for e in result["experiments"]}
    table = Table(title="metrics (min / max of history, last; * marks the best run)")
    table.add_column("metric (better)")
    for eid in ids:
        table.add_column(f"{escape(labels[eid])}\n{eid[:14]}", justify="right")
    for metric, row in result["metrics"].items():
        mode = result["modes"][metric]
        winner = result["best"][metric]["run"]
        cells = []
        for eid in ids:
            s = row.get(eid)
            if s is None:
                cells.append("-")
                continue
            star = "*" if winner == eid else ""
            lo = _fmt(s["min"]) + (star if mode == "min" else "")
            hi = _fmt(s["max"]) + (star if mode == "max" else "")
            cells.append(f"{lo} / {hi}, last {_fmt(s['last'])}")
        guessed = "" if metric in given else ", guessed"
        table.add_row(f"{escape(metric)} ({mode}{guessed})", *cells)
    out = console()
    out.print(table)
    if result["params"]:
        params = Table(title="params that differ")
        params.add_column("param")
        for eid in ids:
            params.add_column(escape(labels[eid]), justify="right")
        for key, values in result["params"].items():
            params.add_row(escape(key), *(escape(json.dumps(values.get(eid))) for eid in ids))
        out.print(params)
    else:
        out.print("all params are equal")
    _print_packages(out, result["packages"], ids, labels)


def _package_differences(tracker: ExperimentTracker, ids: Sequence[str]) -> dict[str, Any]:
    """The distributions whose versions differ between the runs' environments."""
    from ..environment import diff_packages
    from ..errors import ArtifactNotFound, ChecksumMismatch

    def env_of(run_id: str) -> dict[str, Any] | None:
        try:
            return tracker.get_environment(run_id)
        except (ArtifactNotFound, ChecksumMismatch):
            return None  # an unreadable environment takes no part, as a missing one

    envs = [env_of(i) for i in ids]
    return {name: dict(zip(ids, v)) for name, v in diff_packages(envs).items()}


def _print_packages(out: Any, packages: dict[str, Any], ids: Sequence[str], names: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    if not packages:
        out.print("all packages are the same (runs without a recorded environment left out)")
        return
    table = Table(title="packages that differ")
    table.add_column("package")
    for eid in ids:
        table.add_column(escape(names[eid]), justify="right")
    for name, versions in packages.items():
        table.add_row(escape(name), *(escape(versions.get(eid) or "-") for eid in ids))
    out.print(table)


@exp.command("best")
@click.option("--metric", required=True, help="The metric to rank by.")
@click.option("--mode", type=click.Choice(["min", "max"]), default="min", show_default=True)
@click.option(
    "--by",
    type=click.Choice(["best", "last"]),
    default="best",
    show_default=True,
    help="Rank by the best value of each run's history, or by its last value.",
)
@click.option("--where", "where", metavar="FILTER", help=_WHERE_HELP)
@click.option("--tag", "tags", multiple=True, help="Only runs with this tag (repeatable).")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    help="Only runs with this status (default: completed; 'any' for every run).",
)
@click.option("--ancestor-of", metavar="REV", help="Only runs whose code is REV or before it.")
@click.option("--limit", type=int, default=5, show_default=True)
@json_option
@click.pass_context
def best(
    ctx: click.Context,
    metric: str,
    mode: str,
    by: str,
    where: str | None,
    tags: tuple[str, ...],
    statuses: tuple[str, ...],
    ancestor_of: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The runs with the best value of a metric, best first. Only completed runs rank unless
    --status (or a status test in --where) says otherwise.

    \b
    Example:
      coralx exp best --metric val_loss --mode min --tag bert --limit 5
      coralx exp best --metric accuracy --mode max --where "params.lr < 0.01"
    """
    status: Any = list(statuses) or None
    if status and any(s.lower() in ("any", "all") for s in status):
        status = "any"
    rows = _tracker(ctx).find_best(
        metric,
        mode=mode,
        by=by,
        where=where,
        tags=list(tags) or None,
        status=status,
        ancestor_of=ancestor_of,
        limit=limit,
    )
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo(f"no run has a finite value of {metric!r}")
        return
    headers = ["#", "id", "name", metric, "step", "status", "weights"]
    table = [
        [
            str(i),
            r["experiment_id"],
            r["name"],
            _fmt(r["best_value"]),
            _fmt(r["step"]),
            r["status"],
            (r["commit_hash"] or "-")[:12],
        ]
        for i, r in enumerate(rows, 1)
    ]
    click.echo(_plain_table(headers, table))


# -- resume, delete, summary ----------------------------------------------------------------------


@exp.command("resume")
@click.argument("experiment_id")
@json_option
@click.pass_context
def resume(ctx: click.Context, experiment_id: str, as_json: bool) -> None:
    """Create a PENDING child run with the same params, to be started by your training code.

    The old run is never changed. Start the new one from Python with
    tracker.start(name, experiment_id=NEW_ID).

    \b
    Example:
      coralx exp resume 01a2093a
    """
    child = _tracker(ctx).resume(experiment_id, start=False)
    if as_json:
        echo_json(child.to_dict(metrics=False))
        return
    click.echo(f"created pending run {child.experiment_id} ({child.name}), child of "
               f"{child.parent_experiment}")  # fmt: skip
    click.echo(
        f"start it with: tracker.start({child.name!r}, experiment_id={child.experiment_id!r})"
    )


@exp.command("delete")
@click.argument("experiment_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def delete(ctx: click.Context, experiment_id: str, yes: bool) -> None:
    """Delete a run's record and metrics (its weight commits stay in the history).

    \b
    Example:
      coralx exp delete 01a2093a --yes
    """
    tracker = _tracker(ctx)
    run = tracker.get_or_raise(experiment_id)
    if not yes:
        click.confirm(
            f"delete run {run.experiment_id} ({run.name}, {run.status.value})?", abort=True
        )
    tracker.delete(run.experiment_id)
    click.echo(f"deleted {run.experiment_id}")


@exp.command("summary")
@json_option
@click.pass_context
def summary(ctx: click.Context, as_json: bool) -> None:
    """Counts over every run: by status, names, branches, metrics logged, tags.

    \b
    Example:
      coralx exp summary
    """
    data = _tracker(ctx).get_summary()
    if as_json:
        echo_json(data)
        return
    click.echo(f"runs: {data['total_experiments']}")
    for status, count in sorted(data["by_status"].items()):
        click.echo(f"  {status}: {count}")
    click.echo(f"names: {data['unique_names']}")
    click.echo(f"branches: {', '.join(data['branches']) or '-'}")
    click.echo(f"values logged: {data['total_metrics_logged']}")
    click.echo(f"metrics: {', '.join(data['metric_names']) or '-'}")
    tags = ", ".join(f"{t} ({n})" for t, n in data["tags"].items())
    click.echo(f"tags: {tags or '-'}")


# -- code, lineage, metrics, reindex --------------------------------------------------------------


@exp.command("env")
@click.argument("experiment_id")
@click.option(
    "--requirements", "as_requirements", is_flag=True, help="Print a pip requirements file."
)
@json_option
@click.pass_context
def env(ctx: click.Context, experiment_id: str, as_requirements: bool, as_json: bool) -> None:
    """Show the environment a run ran in: Python, platform, machine, GPUs, command line,
    allow-listed environment variables and every installed package with its version.

    \b
    Example:
      coralx exp env 01a2093a
      coralx exp env 01a2093a --requirements > requirements.txt
    """
    from ..environment import requirements
    from ..errors import NotFound

    tracker = _tracker(ctx)
    run = tracker.get_or_raise(experiment_id)
    data = _environment_of(tracker, run)
    if data is None:
        raise NotFound(f"run {run.experiment_id} recorded no environment")
    if as_requirements:
        click.echo(requirements(data, title=f"environment of run {run.experiment_id}"), nl=False)
    elif as_json:
        echo_json(data)
    else:
        _print_environment(data)


def _print_environment(data: dict[str, Any]) -> None:
    py, plat, machine = (
        data.get("python") or {},
        data.get("platform") or {},
        data.get("machine") or {},
    )
    command, git = data.get("command") or {}, data.get("git") or {}
    coralx = data.get("coralx") or {}
    lines = [
        ("python", f"{py.get('version')} ({py.get('implementation')}) {py.get('executable')}"),
        ("platform", f"{plat.get('system')} {plat.get('release')} {plat.get('machine')} "
                     f"{plat.get('libc') or ''}".strip()),
        ("cpus", str(machine.get("cpu_count"))),
        ("memory", f"{(machine.get('memory_bytes') or 0) / 2**30:.1f} GiB"),
        ("host", str(data.get("host"))),
        ("command", " ".join(command.get("argv") or [])),
        ("script", str(command.get("entry_script"))),
        ("git root", str(git.get("root"))),
        ("cwd", str(git.get("cwd"))),
        ("coralx", f"{coralx.get('version')}" + (f" (editable, {coralx.get('url')})"
                                                 if coralx.get("editable") else "")),
    ]  # fmt: skip
    gpu = _gpu_line(data)
    if gpu:
        lines.append(("gpu", gpu))
    for name, value in sorted((data.get("env") or {}).items()):
        lines.append((f"${name}", value))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(f"{key.ljust(width)}  {value}")
    packages = data.get("packages") or {}
    click.echo(f"\npackages ({len(packages)}):")
    click.echo(_plain_table(["name", "version"], sorted(packages.items())))


@exp.command("code")
@click.argument("experiment_id")
@click.option("--into", required=True, type=click.Path(file_okay=False), help="A new folder.")
@json_option
@click.pass_context
def code(ctx: click.Context, experiment_id: str, into: str, as_json: bool) -> None:
    """Restore the code a run ran into a new folder: its snapshot if the tree was dirty,
    else its git commit.

    \b
    Example:
      coralx exp code 01a2093a --into /tmp/code-of-run
    """
    done = _tracker(ctx).restore_code(experiment_id, Path(into))
    if as_json:
        echo_json(done)
        return
    source = f"snapshot {done['tree'][:12]}" if done["source"] == "snapshot" else (
        f"commit {done['commit'][:12]}"
    )  # fmt: skip
    click.echo(f"restored {done['files']} files from {source} into {into}")


@exp.command("lineage")
@click.argument("experiment_id")
@json_option
@click.pass_context
def lineage(ctx: click.Context, experiment_id: str, as_json: bool) -> None:
    """Show a run's family as a tree: the runs it was resumed from, and those resumed from it.

    \b
    Example:
      coralx exp lineage 01a2093a
    """
    tracker = _tracker(ctx)
    chain = tracker.lineage(experiment_id)
    target = chain[-1].experiment_id
    if as_json:
        echo_json([e.to_dict(metrics=False) for e in chain])
        return
    from rich.tree import Tree

    from ._common import markup_cell as escape

    def label(e: Experiment) -> str:
        mark = " [bold]<- this run[/bold]" if e.experiment_id == target else ""
        return f"{e.experiment_id}  {escape(e.name)}  ({e.status.value}){mark}"

    tree = tracker.descendants(chain[0].experiment_id)
    root = Tree(label(chain[0]))

    def grow(node: Tree, branch: dict[str, Any]) -> None:
        for kid in branch["children"]:
            grow(node.add(label(tracker.get_or_raise(kid["id"]))), kid)

    grow(root, tree)
    console().print(root)


@exp.command("metrics")
@click.argument("experiment_id")
@click.argument("metric")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV: step,value,timestamp.")
@json_option
@click.pass_context
def metrics(
    ctx: click.Context, experiment_id: str, metric: str, as_csv: bool, as_json: bool
) -> None:
    """Print every logged value of one metric of a run.

    \b
    Example:
      coralx exp metrics 01a2093a val_loss --csv > val_loss.csv
    """
    from ..errors import NotFound, StoreCorrupted
    from ..records.journal import NO_STEP, damage_message

    run = _tracker(ctx).get_or_raise(experiment_id)
    if run._journal is None:
        raise NotFound(f"run {run.experiment_id} has no metric journal")
    cols = run._read_journal()
    values, steps, times = cols.select(metric)
    logged = int((run.metrics_summary.get(metric) or {}).get("count") or 0)
    if len(values) == 0 and logged and cols.damage:
        raise StoreCorrupted(damage_message(run._journal, cols, {metric: logged}))
    if len(values) == 0:
        raise NotFound(
            f"run {run.experiment_id} logged no {metric!r}; it has: "
            f"{', '.join(run.metric_names) or 'no metrics'}"
        )
    rows = [
        (None if s == NO_STEP else s, v, datetime.fromtimestamp(t).astimezone().isoformat())
        for s, v, t in zip(steps.tolist(), values.tolist(), times.tolist())
    ]
    if as_json:
        echo_json([{"step": s, "value": _json_float(v), "timestamp": t} for s, v, t in rows])
    elif as_csv:
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["step", "value", "timestamp"])
        writer.writerows(("" if s is None else s, repr(v), t) for s, v, t in rows)
    else:
        click.echo(
            _plain_table(["step", metric, "time"], [(_fmt(s), _fmt(v), t) for s, v, t in rows])
        )


def _json_float(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


@exp.command("reindex")
@json_option
@click.pass_context
def reindex(ctx: click.Context, as_json: bool) -> None:
    """Rebuild the query index (index.sqlite) from the experiment records.

    \b
    Example:
      coralx exp reindex
    """
    _run_reindex(ctx, as_json)


@click.command("reindex")
@json_option
@click.pass_context
def reindex_command(ctx: click.Context, as_json: bool) -> None:
    """Rebuild the query index (index.sqlite) from the experiment records.

    The records are the truth; the index only makes queries fast, so it can always be rebuilt.

    \b
    Example:
      coralx reindex
    """
    _run_reindex(ctx, as_json)


def _run_reindex(ctx: click.Context, as_json: bool) -> None:
    bar: Any = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=total, label="indexing runs", file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        result = _tracker(ctx).reindex(None if as_json else progress)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if as_json:
        echo_json(result)
        return
    click.echo(f"indexed {result['records']} runs")
    if result.get("unreadable"):
        click.echo(f"{result['unreadable']} record files could not be read:", err=True)
        for line in result.get("unreadable_files", []):
            click.echo(f"  {cell(line)}", err=True)
        if result.get("recoverable"):
            click.echo(
                f"{len(result['recoverable'])} of them can be restored from the index's copy: "
                "run `coralx fsck --repair`",
                err=True,
            )
