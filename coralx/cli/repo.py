"""``coralx init`` and ``coralx status``."""

from __future__ import annotations

import click

from ._common import console, echo_json, json_option, open_repo

__all__ = ["init", "status"]


@click.command()
@click.argument("path", default=".", type=click.Path(file_okay=False))
@json_option
def init(path: str, as_json: bool) -> None:
    """Create a coralx store (.coralx/) in PATH, the current folder by default.

    Safe to run again: an existing store is left as it is. Inside a git work tree the store
    is added to .git/info/exclude, so `git status` stays clean.

    \b
    Example:
      coralx init
      coralx init ./my-model
    """
    from ..repository import STORE_DIR, Repository, find_git_dir

    target = click.format_filename(path)
    from pathlib import Path

    existed = (Path(target) / STORE_DIR / "config.toml").is_file()
    repo = Repository.init(target)
    in_git = find_git_dir(repo.root) is not None
    if as_json:
        echo_json({"store": str(repo.path), "created": not existed, "git_excluded": in_git})
        return
    out = console()
    verb = "Found existing" if existed else "Initialised"
    out.print(f"{verb} coralx store in [bold]{repo.path}[/bold]")
    if in_git and not existed:
        out.print("Added .coralx/ to .git/info/exclude: your `git status` stays clean.")
    if not existed:
        out.print(
            "Next: track a run from your training code,\n"
            "  from coralx import Repository\n"
            "  from coralx.experiments import ExperimentTracker\n"
            f"  tracker = ExperimentTracker(Repository({str(repo.root)!r}))\n"
            "then see it with `coralx status`."
        )


@click.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show where the store is, its branch and head commit, and what it holds.

    \b
    Example:
      coralx status
      coralx status --json
    """
    repo = open_repo(ctx)
    info = repo.status()
    if as_json:
        echo_json(info.to_dict())
        return
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("store", info.store)
    table.add_row("format", str(info.format_version))
    branch = info.branch if info.branch is not None else "(detached HEAD)"
    table.add_row("branch", branch)
    table.add_row("head", info.head or "(no commits)")
    for name, count in info.counts.items():
        table.add_row(name, f"{count:,}")
    console().print(table)
