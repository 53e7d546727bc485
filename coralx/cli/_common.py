"""What every command shares: opening the repository, a console, JSON output."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console

    from ..repository import Repository

__all__ = ["console", "echo_json", "err_console", "json_option", "open_repo"]


def open_repo(ctx: click.Context) -> Repository:
    """The store named by ``--repo``/``CORALX_REPO``, or the nearest one above the cwd."""
    from ..repository import Repository

    obj = ctx.find_root().obj or {}
    path = obj.get("repo_path")
    if path:
        return Repository.discover(path)
    return Repository.discover()


_consoles: dict[bool, Console] = {}


def console(stderr: bool = False) -> Console:
    """A rich console (created once; rich is imported only when something is rendered)."""
    if stderr not in _consoles:
        from rich.console import Console

        _consoles[stderr] = Console(stderr=stderr, highlight=False, soft_wrap=False)
    return _consoles[stderr]


def err_console() -> Console:
    return console(stderr=True)


def echo_json(data: Any) -> None:
    """Print ``data`` as JSON for scripts (stable key order, no colour)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str))
    sys.stdout.write("\n")


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
