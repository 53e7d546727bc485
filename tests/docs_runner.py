"""Runs the examples of a Markdown file, as a reader would type them.

The convention (BRIEF.md, docs/architecture.md "Docs that run"):

- ```python blocks run in order in one namespace per file (``__name__`` is ``"__docs__"``, so a
  script's ``if __name__ == "__main__":`` block does not run), with a fresh temporary folder as
  the working directory.
- ```console blocks run each ``$ `` line with bash in that same folder, in one bash session per
  file (so ``cd`` and shell variables carry over, as in a terminal). The lines after a command,
  up to the next ``$ `` line, are its expected output: each non-empty one must appear in what
  the command printed (spaces collapsed; ``...`` matches anything). A command must exit 0.
- A block whose previous non-empty line is ``<!-- docs: skip -->`` is not run.
- A block whose previous non-empty line is ``<!-- docs: file NAME -->`` is written to ``NAME``
  in the folder, not run: the script a later ``$ python NAME`` runs.

Other fences (```text, ```yaml, ...) are not run. The runner uses only the standard library:
it is small enough to read in one sitting, and it reports failures by Markdown line.
"""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Block", "DocsFailure", "parse", "run_file"]

FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)\s*$")
MARKER = re.compile(r"^<!--\s*docs:\s*(skip|file\s+(?P<file>[\w./-]+))\s*-->\s*$")
RUN_LANGS = {"python", "console"}
COMMAND_TIMEOUT = 120.0


@dataclass
class Block:
    """One fenced block: its language, text, first line number (1-based) and marker."""

    lang: str
    code: str
    line: int
    skip: bool = False
    file: str | None = None


@dataclass
class Command:
    """One ``$ `` line of a console block (joined over ``\\`` continuations) and the output
    lines the docs show after it."""

    text: str
    line: int
    expected: list[str] = field(default_factory=list)


class DocsFailure(AssertionError):
    """An example failed: the message names the file and line."""


def parse(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, with their markers.

    >>> [b.lang for b in parse("```python\\nx = 1\\n```\\n")]
    ['python']
    """
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    previous = ""
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        ticks, lang = match.group(1), match.group(2).lower()
        start = i + 1
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].strip() != ticks:
            body.append(lines[i])
            i += 1
        marker = MARKER.match(previous)
        blocks.append(
            Block(
                lang=lang,
                code="\n".join(body) + "\n",
                line=start + 1,
                skip=bool(marker and marker.group(1) == "skip"),
                file=marker.group("file") if marker else None,
            )
        )
        previous = ""
        i += 1
    return blocks


def commands(block: Block) -> list[Command]:
    """The ``$ `` commands of a console block; other lines before the first are ignored."""
    out: list[Command] = []
    pending: Command | None = None
    for offset, raw in enumerate(block.code.splitlines()):
        if pending is not None and pending.text.endswith("\\"):
            pending.text = pending.text[:-1] + "\n" + raw
            continue
        if raw.startswith("$ "):
            pending = Command(raw[2:], block.line + offset)
            out.append(pending)
        elif pending is not None and raw.strip():
            pending.expected.append(raw.strip())
    return out


def output_matches(expected: str, output: str) -> bool:
    """True if the expected line appears in ``output``, spaces collapsed, ``...`` a wildcard."""
    flat = " ".join(output.split())
    pattern = ".*?".join(re.escape(" ".join(part.split())) for part in expected.split("..."))
    return re.search(pattern, flat) is not None


class Shell:
    """One bash session: commands run in turn, sharing the working folder and variables."""

    SENTINEL = "__coralx_docs_rc="

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._send("exec 2>&1\n")

    def _send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def run(self, command: str, timeout: float = COMMAND_TIMEOUT) -> tuple[int, str]:
        """Run ``command``; return its exit status and everything it printed."""
        # A { } group runs in the session itself (cd persists; a subshell would lose it), with
        # stdin from /dev/null so a command that reads never eats the commands that follow.
        self._send(f"{{ {command}\n}} </dev/null\nprintf '\\n{self.SENTINEL}%s\\n' \"$?\"\n")
        assert self.proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        data = b""
        deadline = time.monotonic() + timeout
        marker = self.SENTINEL.encode()
        while True:
            at = data.find(marker)
            if at >= 0 and b"\n" in data[at:]:
                break
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                self.close()
                raise DocsFailure(f"timed out after {timeout:.0f}s: {command}\n{data.decode()}")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise DocsFailure(f"bash ended while running: {command}\n{data.decode()}")
            data += chunk
        selector.close()
        text = data.decode("utf-8", errors="replace")
        head, _, tail = text.rpartition(self.SENTINEL)
        return int(tail.strip()), head.removesuffix("\n")

    def close(self) -> None:
        if self.proc.poll() is None:
            import signal

            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def docs_env(root: Path) -> dict[str, str]:
    """The environment of the console commands: this checkout's coralx and the running
    interpreter's ``python`` and ``coralx`` first on the PATH; plain, wide output."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    env.update({"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"})
    env.pop("FORCE_COLOR", None)
    return env


def run_file(path: Path, workdir: Path, root: Path) -> dict[str, Any]:
    """Run every example of ``path`` in ``workdir``; raise :class:`DocsFailure` at the first
    that fails. Returns counts of what ran (for the test's own check)."""
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    counts = {"python": 0, "commands": 0, "files": 0, "skipped": 0}
    shell: Shell | None = None
    old_cwd = os.getcwd()
    os.chdir(workdir)
    try:
        for block in parse(path.read_text(encoding="utf-8")):
            where = f"{path.name}:{block.line}"
            if block.lang not in RUN_LANGS:
                continue
            if block.skip:
                counts["skipped"] += 1
            elif block.file is not None:
                (workdir / block.file).write_text(block.code, encoding="utf-8")
                counts["files"] += 1
            elif block.lang == "python":
                _run_python(block, namespace, where)
                counts["python"] += 1
            else:
                if shell is None:
                    shell = Shell(workdir, docs_env(root))
                for command in commands(block):
                    _run_command(shell, command, f"{path.name}:{command.line}")
                    counts["commands"] += 1
    finally:
        os.chdir(old_cwd)
        if shell is not None:
            shell.close()
    return counts


def _run_python(block: Block, namespace: dict[str, Any], where: str) -> None:
    try:
        exec(compile(block.code, where, "exec"), namespace)
    except Exception as exc:
        kind = type(exc).__name__
        raise DocsFailure(f"the python block at {where} raised {kind}: {exc}") from exc


def _run_command(shell: Shell, command: Command, where: str) -> None:
    status, output = shell.run(command.text)
    if status != 0:
        raise DocsFailure(f"`$ {command.text}` at {where} exited {status}:\n{output}")
    for line in command.expected:
        if not output_matches(line, output):
            raise DocsFailure(
                f"`$ {command.text}` at {where} should print {line!r}; it printed:\n{output}"
            )
