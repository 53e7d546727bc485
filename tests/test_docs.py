"""Every CLI command has help text and is documented in docs/cli.md; every example in
README.md and docs/*.md runs (see tests/docs_runner.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from coralx.cli.main import cli

from .docs_runner import RUN_LANGS, Block, parse

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


# -- every example in README.md and docs/*.md runs (tests/docs_runner.py has the convention) --

DOC_FILES = [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("path", DOC_FILES, ids=[p.name for p in DOC_FILES])
def test_examples_run(path: Path, tmp_path: Path) -> None:
    from .docs_runner import run_file

    counts = run_file(path, tmp_path, DOCS.parent)
    runnable = [b for b in parse(path.read_text(encoding="utf-8")) if b.lang in RUN_LANGS]
    assert counts["python"] + counts["files"] + counts["skipped"] + _console(runnable) == len(
        runnable
    ), counts


def _console(blocks: list[Block]) -> int:
    return sum(1 for b in blocks if b.lang == "console" and not b.skip and b.file is None)


def test_runner_checks_what_it_runs(tmp_path: Path) -> None:
    from .docs_runner import DocsFailure, run_file

    doc = tmp_path / "doc.md"
    work = tmp_path / "work"
    work.mkdir()
    doc.write_text(
        "```python\nx = 41\n```\n\n```python\nx += 1\nimport pathlib\n"
        "pathlib.Path('x.txt').write_text(str(x))\n```\n"
        "\n<!-- docs: file hello.py -->\n```python\nprint('hello from', __name__)\n```\n"
        "\n```console\n$ mkdir sub && cd sub\n$ cat ../x.txt\n42\n$ pwd\n.../sub\n"
        "$ python ../hello.py\nhello ... __main__\n```\n"
        "\n<!-- docs: skip -->\n```python\nraise SystemExit('partial')\n```\n",
        encoding="utf-8",
    )
    counts = run_file(doc, work, DOCS.parent)
    assert counts == {"python": 2, "commands": 4, "files": 1, "skipped": 1}
    for bad, message in [
        ("```python\nraise ValueError('no')\n```\n", "doc.md:2 raised ValueError"),
        ("```console\n$ false\n```\n", "exited 1"),
        ("```console\n$ echo one\ntwo\n```\n", "should print 'two'"),
    ]:
        doc.write_text(bad, encoding="utf-8")
        with pytest.raises(DocsFailure, match=message):
            run_file(doc, work, DOCS.parent)
