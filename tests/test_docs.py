"""Every CLI command has help text and is documented in docs/cli.md."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from coralx.cli.main import cli

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _commands(group: click.Group, prefix: str = "coralx") -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        path = f"{prefix} {name}"
        yield path, command
        if isinstance(command, click.Group):
            yield from _commands(command, path)


ALL_COMMANDS = sorted(_commands(cli), key=lambda item: item[0])


@pytest.mark.parametrize(("path", "command"), ALL_COMMANDS, ids=[p for p, _ in ALL_COMMANDS])
def test_command_has_help(path: str, command: click.Command) -> None:
    assert command.help and len(command.help.strip()) > 20, f"{path} needs help text"
    if not isinstance(command, click.Group):
        assert "Example" in command.help, f"{path}'s help should show an example"


@pytest.mark.parametrize("path", [p for p, _ in ALL_COMMANDS])
def test_command_is_documented(path: str) -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert f"## `{path}" in text or f"### `{path}" in text, f"document `{path}` in docs/cli.md"


def test_readme_names_the_two_commands() -> None:
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme
    assert "make test" in readme
