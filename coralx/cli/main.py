"""The ``coralx`` entry point: the command table, and the one place errors become exit codes.

Commands live in modules beside this one and are imported only when they are run (or when
``--help`` lists them), each importing its heavy libraries inside the command body, so
``coralx --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from .._version import __version__

__all__ = ["cli", "main"]

# command name -> (module, attribute). Groups (exp, sweep) are commands too.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("coralx.cli.repo", "init"),
    "status": ("coralx.cli.repo", "status"),
    "add": ("coralx.cli.weights", "add"),
    "commit": ("coralx.cli.weights", "commit"),
    "log": ("coralx.cli.weights", "log"),
    "branch": ("coralx.cli.weights", "branch"),
    "tag": ("coralx.cli.weights", "tag"),
    "checkout": ("coralx.cli.weights", "checkout"),
    "diff": ("coralx.cli.weights", "diff"),
    "show": ("coralx.cli.weights", "show"),
    "export": ("coralx.cli.weights", "export"),
    "gc": ("coralx.cli.weights", "gc"),
    "fsck": ("coralx.cli.weights", "fsck"),
    "du": ("coralx.cli.weights", "du"),
    "sweep": ("coralx.cli.sweep", "sweep"),
    "exp": ("coralx.cli.exp", "exp"),
    "reindex": ("coralx.cli.exp", "reindex_command"),
    "ui": ("coralx.cli.ui", "ui"),
    "import": ("coralx.cli.importer", "import_group"),
    "remote": ("coralx.cli.remote", "remote"),
    "push": ("coralx.cli.remote", "push"),
    "pull": ("coralx.cli.remote", "pull"),
    "fetch": ("coralx.cli.remote", "fetch"),
    "clone": ("coralx.cli.remote", "clone"),
}

from ._common import EXIT_INTERRUPTED  # noqa: E402,F401 - re-exported for older imports


class LazyGroup(click.Group):
    """A click group whose commands are imported on demand from :data:`COMMANDS`."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy:
            module, attr = self._lazy[cmd_name]
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        from ._common import run_mapped

        return run_mapped(ctx, lambda: super(LazyGroup, self).invoke(ctx))


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="coralx")
@click.option(
    "-C",
    "--repo",
    "repo_path",
    metavar="PATH",
    envvar="CORALX_REPO",
    help="Use the store at or above PATH instead of the current folder (env: CORALX_REPO).",
)
@click.option(
    "--debug",
    is_flag=True,
    envvar="CORALX_DEBUG",
    help="Show the traceback of an error, not only its message (env: CORALX_DEBUG=1).",
)
@click.pass_context
def cli(ctx: click.Context, repo_path: str | None, debug: bool) -> None:
    """coralx: versioned weights, experiments and code, in one store beside your git repo.

    \b
    Start with:
      coralx init                  create .coralx/ in this folder
      coralx status                where the store is and what it holds
      coralx exp list --tag bert   runs, newest first (see `coralx exp --help`)
      coralx exp best --metric val_loss --mode min
      coralx log --run ID          a run's weight commits (coralx log: the branch's)
      coralx checkout REV -o model.safetensors
      coralx ui                    look at it all in the browser
    """
    ctx.obj = {"repo_path": repo_path, "debug": debug}


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="coralx")


if __name__ == "__main__":  # pragma: no cover
    main()
