"""``coralx remote``, ``push``, ``pull``, ``fetch`` and ``clone``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ._common import console, echo_json, json_option, open_repo

if TYPE_CHECKING:
    from ..remote.sync import PullReport

__all__ = ["clone", "fetch", "pull", "push", "remote"]


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


@click.group()
def remote() -> None:
    """Manage remotes: folders or S3 buckets shared with other machines and people.

    \b
    Example:
      coralx remote add origin s3://team-bucket/projects/bert
      coralx remote add shared /mnt/shared/bert.coralx
      coralx remote list
    """


@remote.command("add")
@click.argument("name")
@click.argument("url")
@click.option(
    "--endpoint-url", default=None, help="S3-compatible endpoint (MinIO, SeaweedFS, R2, ...)."
)
@json_option
@click.pass_context
def remote_add(
    ctx: click.Context, name: str, url: str, endpoint_url: str | None, as_json: bool
) -> None:
    """Add a remote NAME at URL: a folder path or s3://bucket/prefix. No credentials are
    stored: S3 uses the standard AWS chain (environment, profile, instance role).

    \b
    Example:
      coralx remote add origin s3://team-bucket/projects/bert
      coralx remote add origin s3://bucket/p --endpoint-url http://127.0.0.1:9000
    """
    entry = open_repo(ctx).add_remote(name, url, endpoint_url)
    if as_json:
        echo_json(entry)
        return
    console().print(f"added remote [bold]{name}[/bold]: {entry['url']}")


@remote.command("list")
@json_option
@click.pass_context
def remote_list(ctx: click.Context, as_json: bool) -> None:
    """List the remotes.

    \b
    Example:
      coralx remote list --json
    """
    remotes = open_repo(ctx).remotes()
    if as_json:
        echo_json(remotes)
        return
    out = console()
    for r in remotes:
        extra = f"  (endpoint {r['endpoint_url']})" if r.get("endpoint_url") else ""
        out.print(f"{r['name']}\t{r['url']}{extra}")


@remote.command("remove")
@click.argument("name")
@click.pass_context
def remote_remove(ctx: click.Context, name: str) -> None:
    """Forget the remote NAME (the remote itself is not touched).

    \b
    Example:
      coralx remote remove origin
    """
    from ..remote import remove_remote

    remove_remote(open_repo(ctx), name)
    console().print(f"removed remote [bold]{name}[/bold]")


@click.command()
@click.argument("name", default="origin")
@click.argument("branches", nargs=-1)
@click.option("-f", "--force", is_flag=True, help="Replace remote branches that diverged.")
@json_option
@click.pass_context
def push(
    ctx: click.Context, name: str, branches: tuple[str, ...], force: bool, as_json: bool
) -> None:
    """Send the current branch (or BRANCHES), tags, run lines, records, journals, blobs and
    sweeps to the remote NAME (default origin): only what it lacks.

    \b
    Example:
      coralx push
      coralx push origin main --json
    """
    report = open_repo(ctx).push(name, list(branches) or None, force)
    if as_json:
        echo_json(report.to_dict())
        return
    console().print(
        f"pushed to {name}: {report.chunks_sent} chunks ({_size(report.chunk_bytes)}), "
        f"{report.objects_sent} git objects, {report.files_sent} files, "
        f"{len(report.refs)} refs updated; {_size(report.bytes_sent)} sent"
    )


def _print_pull(name: str, report: PullReport, as_json: bool, verb: str) -> None:
    if as_json:
        echo_json(report.to_dict())
        return
    out = console()
    out.print(
        f"{verb} {name}: {report.chunks_received} chunks, {report.objects_received} git "
        f"objects, {report.files_received} files, {len(report.refs)} refs; "
        f"{_size(report.bytes_received)} received"
    )
    if report.updated_branch:
        out.print(f"fast-forwarded {report.updated_branch}")
    if report.note:
        out.print(report.note)


@click.command()
@click.argument("name", default="origin")
@json_option
@click.pass_context
def fetch(ctx: click.Context, name: str, as_json: bool) -> None:
    """Bring the runs, weights and branches of remote NAME here, verified; its branches
    appear as NAME/BRANCH in every revision argument. Local branches do not move.

    \b
    Example:
      coralx fetch && coralx log origin/main
    """
    _print_pull(name, open_repo(ctx).fetch(name), as_json, "fetched from")


@click.command()
@click.argument("name", default="origin")
@json_option
@click.pass_context
def pull(ctx: click.Context, name: str, as_json: bool) -> None:
    """Fetch from remote NAME, then fast-forward the current branch; runs from every
    machine appear in `coralx exp list`.

    \b
    Example:
      coralx pull
    """
    _print_pull(name, open_repo(ctx).pull(name), as_json, "pulled from")


@click.command()
@click.argument("url")
@click.argument("path")
@click.option("--endpoint-url", default=None, help="S3-compatible endpoint.")
@json_option
def clone(url: str, path: str, endpoint_url: str | None, as_json: bool) -> None:
    """Create a store in PATH with everything on the remote at URL (as origin).

    \b
    Example:
      coralx clone s3://team-bucket/projects/bert bert
      coralx clone /mnt/shared/bert.coralx bert
    """
    from ..repository import Repository

    repo = Repository.clone(url, path, endpoint_url)
    if as_json:
        echo_json({"store": str(repo.path), "remote": url})
        return
    console().print(f"cloned {url} into [bold]{repo.path}[/bold]")
