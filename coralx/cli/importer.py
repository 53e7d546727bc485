"""``coralx import``: bring runs from other trackers into the store."""

from __future__ import annotations

import click

from ._common import console, echo_json, json_option, open_repo

__all__ = ["import_group"]


@click.group("import")
def import_group() -> None:
    """Import runs kept by another tracker (MLflow) into this store; again adds nothing."""


@import_group.command("mlflow")
@click.argument("source")
@click.option("--include-deleted", is_flag=True, help="Import runs deleted in MLflow too.")
@click.option("--no-progress", is_flag=True, help="Do not show a progress bar.")
@json_option
@click.pass_context
def mlflow_command(
    ctx: click.Context, source: str, include_deleted: bool, no_progress: bool, as_json: bool
) -> None:
    """Import the runs of an MLflow FileStore folder or SQLite database.

    SOURCE is an mlruns/ folder or sqlite:///mlflow.db. Each run keeps its name,
    params, tags, status, times, full metric history, parent and git commit; its files
    become blobs, its safetensors files weight commits. Pickled files are kept, never
    loaded. Importing again adds nothing.

    \b
    Example:
      coralx import mlflow ./mlruns
      coralx import mlflow sqlite:///mlflow.db --json
    """
    from ..importers.mlflow import import_mlflow

    repo = open_repo(ctx)
    if no_progress or as_json:
        summary = import_mlflow(repo, source, include_deleted=include_deleted)
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console(stderr=True), transient=True) as bar:
            task = bar.add_task("importing runs", total=None)
            summary = import_mlflow(
                repo,
                source,
                include_deleted=include_deleted,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    if as_json:
        echo_json(summary.to_dict())
        return
    out = console()
    out.print(f"imported {summary.imported} of {summary.runs} runs from {summary.source}")
    out.print(
        f"  {summary.metrics:,} metric values, {summary.artifacts} artifacts "
        f"({summary.pickles} pickled, kept unread), {summary.weight_commits} weight commits"
    )
    notes = []
    if summary.skipped:
        notes.append(f"{summary.skipped} already imported")
    if summary.deleted:
        notes.append(f"{summary.deleted} deleted in MLflow (--include-deleted imports them)")
    if summary.remote_artifacts:
        notes.append(f"{summary.remote_artifacts} with remote artifacts, not copied")
    if notes:
        out.print("skipped: " + "; ".join(notes))
