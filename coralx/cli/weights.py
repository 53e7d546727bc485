"""Weight commands: add, commit, log, branch, tag, checkout, diff, show, export, gc, fsck, du."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import click

from ._common import cell, console, echo_json, json_option, markup_cell, open_repo

__all__ = [
    "add",
    "branch",
    "checkout",
    "commit",
    "diff",
    "du",
    "export",
    "fsck",
    "gc",
    "log",
    "show",
    "tag",
]

PROGRESS_BYTES = 64 << 20  # show a progress bar for exports bigger than this


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@json_option
@click.pass_context
def add(ctx: click.Context, files: tuple[str, ...], as_json: bool) -> None:
    """Stage the tensors of .safetensors or .npz FILES for the next `coralx commit`.

    Chunks are written to the store now (deduplicated); the staged list is kept in
    .coralx/STAGE.json until the commit. Files are never unpickled.

    \b
    Example:
      coralx add model.safetensors
      coralx commit -m "fine-tuned on set B"
    """
    import os

    repo = open_repo(ctx)
    names: list[str] = []
    total = sum(os.path.getsize(p) for p in files if os.path.isfile(p))
    if total < PROGRESS_BYTES or as_json:
        for path in files:
            names += repo.add_file(path)
    else:
        with _progress_bar("add", total) as advance:
            for path in files:
                names += repo.weights.add_file(path, progress=advance)
    repo.weights.save_stage()
    staged = repo.weights.staged_names()
    if as_json:
        echo_json({"added": names, "staged": staged})
        return
    console().print(f"Staged {len(names)} tensors from {len(files)} file(s); {len(staged)} staged.")


@click.command()
@click.option("-m", "--message", required=True, help="What this commit holds.")
@click.option("-b", "--branch", default=None, help="Commit to this branch (default: HEAD's).")
@click.option("--experiment", "experiment_id", default=None, help="Link to an experiment id.")
@json_option
@click.pass_context
def commit(
    ctx: click.Context, message: str, branch: str | None, experiment_id: str | None, as_json: bool
) -> None:
    """Commit the staged tensors (from `coralx add`).

    \b
    Example:
      coralx add model.safetensors
      coralx commit -m "epoch 3: val_loss 0.41"
    """
    repo = open_repo(ctx)
    result = repo.commit(message, branch=branch, experiment_id=experiment_id)
    if as_json:
        echo_json(result.to_dict())
        return
    where = branch or repo.current_branch() or "detached HEAD"
    console().print(f"[bold]{result.short_hash}[/bold] on {where}: {result.message}")


@click.command()
@click.argument("rev", required=False)
@click.option("-n", "--limit", type=int, default=None, help="Show at most N commits.")
@click.option("--run", "run", default=None, help="Show the weight commits of this run only.")
@json_option
@click.pass_context
def log(
    ctx: click.Context, rev: str | None, limit: int | None, run: str | None, as_json: bool
) -> None:
    """Show the weight commits reachable from REV (default HEAD), newest first.

    \b
    Example:
      coralx log -n 5
      coralx log main --json
      coralx log --run 0190a3c1
      coralx log origin/main
    """
    repo = open_repo(ctx)
    if run is not None and rev is not None:
        raise click.UsageError("give a REV or --run, not both")
    commits = repo.log(rev, limit, run=run)
    if as_json:
        echo_json([c.to_dict() for c in commits])
        return
    out = console()
    for c in commits:
        links = [f"{k} {v}" for k, v in (("exp", c.experiment_id), ("code", c.code_commit)) if v]
        extra = f"  [dim]({', '.join(links)})[/dim]" if links else ""
        when = c.timestamp.strftime("%Y-%m-%d %H:%M")
        subject = markup_cell((c.message or "").split("\n", 1)[0])
        out.print(f"[yellow]{c.short_hash}[/yellow] {when}  {subject}{extra}")


@click.command()
@click.argument("name", required=False)
@click.argument("rev", required=False)
@click.option("-f", "--force", is_flag=True, help="Move an existing branch.")
@json_option
@click.pass_context
def branch(
    ctx: click.Context, name: str | None, rev: str | None, force: bool, as_json: bool
) -> None:
    """List branches, or create branch NAME at REV (default HEAD).

    \b
    Example:
      coralx branch
      coralx branch lr-sweep main~2
    """
    repo = open_repo(ctx)
    if name:
        made = repo.create_branch(name, rev, force=force)
        if as_json:
            echo_json(made.to_dict())
        else:
            console().print(f"Branch [bold]{made.name}[/bold] at {made.commit[:10]}")
        return
    branches = repo.branches()
    if as_json:
        echo_json([b.to_dict() for b in branches])
        return
    for b in branches:
        mark = "*" if b.current else " "
        console().print(f"{mark} {b.name}  [yellow]{b.commit[:10]}[/yellow]")


@click.command()
@click.argument("name", required=False)
@click.argument("rev", required=False)
@click.option("-m", "--message", default=None, help="Make an annotated tag with this message.")
@json_option
@click.pass_context
def tag(
    ctx: click.Context, name: str | None, rev: str | None, message: str | None, as_json: bool
) -> None:
    """List tags, or tag REV (default HEAD) as NAME. Tags never move.

    \b
    Example:
      coralx tag
      coralx tag best 3f9a2c1 -m "val_loss 0.31"
    """
    repo = open_repo(ctx)
    if name:
        made = repo.tag(name, rev, message)
        if as_json:
            echo_json(made.to_dict())
        else:
            console().print(f"Tag [bold]{made.name}[/bold] at {made.commit[:10]}")
        return
    tags = repo.tags()
    if as_json:
        echo_json([t.to_dict() for t in tags])
        return
    for t in tags:
        note = f"  {t.message}" if t.message else ""
        console().print(f"{t.name}  [yellow]{t.commit[:10]}[/yellow]{note}")


@click.command()
@click.argument("rev")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write REV's weights to this safetensors file instead of moving HEAD.",
)
@json_option
@click.pass_context
def checkout(ctx: click.Context, rev: str, output: str | None, as_json: bool) -> None:
    """Move HEAD to REV (a branch, or detached at any revision), or with -o write REV's
    weights to a safetensors file.

    \b
    Example:
      coralx checkout lr-sweep
      coralx checkout best -o model.safetensors
    """
    repo = open_repo(ctx)
    if output:
        _export(repo, rev, output, as_json)
        return
    result = repo.checkout(rev)
    if as_json:
        echo_json({"branch": repo.current_branch(), **result.to_dict()})
        return
    where = repo.current_branch()
    if where:
        console().print(f"HEAD is on branch [bold]{where}[/bold] at {result.short_hash}")
    else:
        console().print(f"HEAD is detached at {result.short_hash}: {result.message}")


@click.command()
@click.argument("rev_a", required=False)
@click.argument("rev_b", required=False)
@json_option
@click.pass_context
def diff(ctx: click.Context, rev_a: str | None, rev_b: str | None, as_json: bool) -> None:
    """Compare the weights of REV_A and REV_B (default: HEAD~1 and HEAD; one REV: REV and
    HEAD): tensors added, removed and changed, with max |change|, L2 and fraction changed.

    \b
    Example:
      coralx diff
      coralx diff best main --json
      coralx diff RUN_A RUN_B          # two runs' last commits (experiment ids)
      coralx diff RUN~1 RUN            # a run's last checkpoint against its previous one
    """
    repo = open_repo(ctx)
    a = rev_a or "HEAD~1"
    b = rev_b or "HEAD"
    result = repo.diff(a, b)
    if as_json:
        echo_json(result.to_dict())
        return
    from rich.table import Table

    out = console()
    out.print(f"{result.rev_a[:10]} -> {result.rev_b[:10]}")
    for name in result.added:
        out.print(f"[green]+ {name}[/green]")
    for name in result.removed:
        out.print(f"[red]- {name}[/red]")
    if result.changed:
        table = Table("tensor", "max |change|", "L2 change", "changed")
        for c in result.changed:
            if c.max_abs_change is None:
                table.add_row(
                    markup_cell(c.name),
                    f"{c.dtype[0]}{c.shape[0]} -> {c.dtype[1]}{c.shape[1]}",
                    "",
                    "",
                )
                continue
            table.add_row(
                markup_cell(c.name),
                f"{c.max_abs_change:.3g}",
                f"{c.l2_change:.3g}",
                f"{100 * (c.fraction_changed or 0):.1f}%",
            )
        out.print(table)
    out.print(f"{len(result.unchanged)} tensor(s) unchanged")


@click.command()
@click.argument("rev", required=False)
@json_option
@click.pass_context
def show(ctx: click.Context, rev: str | None, as_json: bool) -> None:
    """Show a weight commit (default HEAD): message, links and its tensors.

    \b
    Example:
      coralx show
      coralx show best --json
    """
    repo = open_repo(ctx)
    info = repo.weights.show(rev)
    if as_json:
        echo_json(info)
        return
    from rich.table import Table

    out = console()
    out.print(f"commit [yellow]{info['commit_hash']}[/yellow]")
    out.print(f"author {info['author']}\ndate   {info['timestamp']}")
    for key in ("experiment_id", "code_commit", "code_branch"):
        if info.get(key):
            out.print(f"{key.replace('_', ' ')}: {info[key]}")
    out.print(f"\n    {info['message']}\n")
    table = Table("tensor", "dtype", "shape", "size")
    for name, t in info["tensors"].items():
        table.add_row(markup_cell(name), t["dtype"], str(tuple(t["shape"])), _size(t["nbytes"]))
    out.print(table)
    out.print(f"{len(info['tensors'])} tensors, {_size(info['nbytes'])}")


@contextlib.contextmanager
def _progress_bar(what: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr, in bytes; yields the function that advances it (safe
    to call from the worker threads)."""
    import threading

    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    columns = (BarColumn(), DownloadColumn(), TimeRemainingColumn())
    lock = threading.Lock()
    with Progress(*columns, console=console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=total)

        def advance(n: int) -> None:
            with lock:
                bar.advance(task, n)

        yield advance


def _export(repo: Any, rev: str, output: str, as_json: bool, only: tuple[str, ...] = ()) -> None:
    patterns = list(only) or None
    info = repo.weights.show(rev)
    if patterns:
        import fnmatch

        sizes = info["tensors"].items()
        total = sum(t["nbytes"] for n, t in sizes if any(fnmatch.fnmatchcase(n, p) for p in only))
    else:
        total = int(info["nbytes"])
    if total < PROGRESS_BYTES or as_json:
        result = repo.export(rev, output, only=patterns)
    else:
        with _progress_bar("export", total) as advance:
            result = repo.export(rev, output, progress=advance, only=patterns)
    if as_json:
        echo_json(result)
        return
    console().print(
        f"Wrote {result['tensors']} tensors of commit {result['commit'][:10]} to "
        f"[bold]{result['path']}[/bold] ({_size(result['bytes'])})"
    )


@click.command()
@click.argument("rev")
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="File to write."
)
@click.option(
    "--only",
    multiple=True,
    metavar="GLOB",
    help="Only the tensors whose names match GLOB (repeatable), e.g. 'encoder.*'.",
)
@json_option
@click.pass_context
def export(ctx: click.Context, rev: str, output: str, only: tuple[str, ...], as_json: bool) -> None:
    """Write the weights of REV (or only some tensors) to a safetensors file, streamed,
    with the commit's id, message and links in its metadata. The file appears when it is
    complete: an interrupted export leaves nothing under its name.

    \b
    Example:
      coralx export best -o model.safetensors
      coralx export best --only 'encoder.*' -o part.safetensors
    """
    _export(open_repo(ctx), rev, output, as_json, only)


@click.command()
@click.option(
    "--prune-age",
    type=float,
    default=3600.0,
    show_default=True,
    help="Keep unreachable chunks younger than this many seconds (a writer may need them).",
)
@click.option("-n", "--dry-run", is_flag=True, help="Only report what would be removed.")
@json_option
@click.pass_context
def gc(ctx: click.Context, prune_age: float, dry_run: bool, as_json: bool) -> None:
    """Remove chunks that no branch, tag, HEAD, staged tensor or experiment record reaches.

    \b
    Example:
      coralx gc --dry-run
      coralx gc --prune-age 0
    """
    report = open_repo(ctx).gc(prune_age=prune_age, dry_run=dry_run)
    if as_json:
        echo_json(report.to_dict())
        return
    verb = "Would remove" if dry_run else "Removed"
    console().print(
        f"{verb} {report.removed_chunks} chunk(s), {_size(report.freed_bytes)}; kept "
        f"{report.kept_chunks} chunk(s) of {report.reachable_commits} reachable commit(s)."
    )


@click.command()
@click.option(
    "--repair",
    is_flag=True,
    help="First restore damaged experiment records from the index's copy of them.",
)
@json_option
@click.pass_context
def fsck(ctx: click.Context, repair: bool, as_json: bool) -> None:
    """Check the whole store: every reachable chunk against its id (naming the damaged
    tensors and commits), and every experiment record, metric journal, blob and sweep file.
    Exits with code 3 when anything is damaged, naming each damaged file.

    \b
    Example:
      coralx fsck
      coralx fsck --repair
    """
    report = open_repo(ctx).fsck(repair=repair)
    if as_json:
        echo_json(report.to_dict())
    else:
        out = console()
        for bad in report.damaged:
            out.print(f"[red]damaged[/red] chunk {bad['chunk']}: {markup_cell(bad['error'])}")
            for commit_id, tensor in bad["uses"]:
                out.print(f"  used by tensor {markup_cell(repr(tensor))} in commit {commit_id}")
        for bad in report.damaged_files:  # plain lines: a long path is never wrapped
            click.echo(f"damaged {bad['kind']} {cell(bad['file'])}: {cell(bad['error'])}")
            click.echo(f"  to repair: {bad['repair']}")
        problems = len(report.damaged) + len(report.damaged_files)
        state = "OK" if report.ok else f"{problems} damaged"
        out.print(
            f"Checked {report.checked_chunks} chunk(s) of {report.checked_commits} commit(s), "
            f"and the records, journals, blobs and sweeps: {state}"
        )
    if not report.ok:
        from ..errors import StoreCorrupted

        ctx.exit(StoreCorrupted.exit_code)


@click.command()
@json_option
@click.pass_context
def du(ctx: click.Context, as_json: bool) -> None:
    """Show the space weights take: logical, unique and stored bytes, the space the chunk
    files take on disk (allocated blocks, as `du` counts them), and the ratios.

    \b
    Example:
      coralx du
    """
    report = open_repo(ctx).du()
    if as_json:
        echo_json(report.to_dict())
        return
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("commits", f"{report.commits:,}")
    table.add_row("chunks", f"{report.chunks:,}")
    table.add_row("logical (every commit in full)", _size(report.logical_bytes))
    table.add_row("unique (each chunk once)", _size(report.unique_raw_bytes))
    table.add_row("stored (chunk bytes)", _size(report.stored_bytes))
    table.add_row(f"on disk ({report.files:,} files, in blocks)", _size(report.disk_bytes))
    table.add_row("dedup ratio", f"{report.dedup_ratio:.2f}x")
    table.add_row("compression ratio", f"{report.compression_ratio:.2f}x")
    table.add_row("stored / logical", f"{report.stored_fraction:.3f}")
    console().print(table)
