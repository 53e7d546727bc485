"""What every command shares: opening the repository, a console, JSON output, safe table
cells, and the one place where errors become messages and exit codes."""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from .._text import cell, markup_cell
from ..errors import EXIT_ENVIRONMENT, EXIT_INTERRUPTED, EXIT_SWEEP_FAILED

if TYPE_CHECKING:
    from rich.console import Console

    from ..repository import Repository

__all__ = [
    "EXIT_CODES",
    "EXIT_ENVIRONMENT",
    "EXIT_INTERRUPTED",
    "EXIT_SWEEP_FAILED",
    "cell",
    "console",
    "echo_json",
    "err_console",
    "json_option",
    "markup_cell",
    "open_repo",
    "run_mapped",
]

EXIT_CODES = {
    0: "success",
    1: "an error coralx reports (the message says what to do), an unknown run id among them",
    2: "bad input: an invalid name, value, option or file",
    3: "stored data is damaged (`coralx fsck` lists it)",
    4: "not found: a revision, sweep, tensor or store",
    5: "busy: another process holds a lock or kept moving a ref",
    EXIT_ENVIRONMENT: "the environment refused: disk full, no such folder, no permission",
    EXIT_SWEEP_FAILED: "a sweep finished, but some of its configurations failed",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


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


# Table cells: `cell` and `markup_cell`, from coralx/_text.py (the sweep script's CLI uses them).

# -- errors to exit codes (the one place) -------------------------------------------------------


def run_mapped(ctx: click.Context, call: Callable[[], Any]) -> Any:
    """Run a command, turning what it raises into one line on stderr and an exit code:
    :class:`CoralxError` by its ``exit_code``, an environmental error (``OSError``: a full
    disk, a missing folder, no permission; SQLite's disk errors) by :data:`EXIT_ENVIRONMENT`
    naming the path and the cause. With ``--debug`` or ``CORALX_DEBUG=1`` the traceback is
    shown as well. Warnings (a damaged journal) print as ``warning: ...`` lines."""
    import warnings

    from ..errors import CoralxError, StoreCorrupted
    from ..records.journal import JournalDamaged

    with warnings.catch_warnings():
        # Damage the library reports as a warning is shown to the user, as one line.
        warnings.filterwarnings("always", category=JournalDamaged)
        warnings.showwarning = _show_warning
        try:
            return call()
        except CoralxError as exc:
            _debug_traceback(ctx)
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            # `coralx exp list | head`: the reader left; nothing to report.
            with _quiet_stdout():
                ctx.exit(0)
        except Exception as exc:
            damage = damaged_object_message(exc)
            if damage is not None:
                _debug_traceback(ctx)
                click.echo(f"error: {damage}", err=True)
                ctx.exit(StoreCorrupted.exit_code)
            message = environment_message(exc)
            if message is None:
                raise
            _debug_traceback(ctx)
            click.echo(f"error: {message}", err=True)
            ctx.exit(EXIT_ENVIRONMENT)


def damaged_object_message(exc: BaseException) -> str | None:
    """One line for what reading a damaged git object of the store raises (a zlib stream that
    fails its check, a malformed object), or None."""
    name = type(exc).__name__
    module = type(exc).__module__
    if (module == "zlib" and name == "error") or name in (
        "ObjectFormatException",
        "ChecksumMismatch",
    ):
        if module.startswith("coralx"):
            return None
        return (
            f"an object of the store's history (.coralx/objects) is damaged ({exc}); "
            "run `coralx fsck` to name it and the commits that need it"
        )
    return None


_HINTS = {
    errno.ENOSPC: "the disk is full: free some space (`coralx gc` drops unused chunks) and "
    "run the command again; what was stored before is unchanged",
    errno.EDQUOT: "the disk quota is used up: free some space and run the command again",
    errno.EACCES: "permission denied: check the owner and mode of this path",
    errno.EPERM: "the operation is not permitted on this path",
    errno.EROFS: "the file system is read-only: pick a writable place",
    errno.ENOENT: "no such file or folder: check the path (an output folder must exist)",
    errno.ENOTDIR: "a part of this path is not a folder",
    errno.EISDIR: "this path is a folder, a file was expected",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n)",
    errno.EIO: "an input/output error: the disk or the network file system failed",
}


def environment_message(exc: BaseException) -> str | None:
    """One line naming the path and the cause of an environmental error, or None if ``exc``
    is not one (a bug, which keeps its traceback)."""
    if isinstance(exc, OSError):
        path = exc.filename if exc.filename is not None else None
        other = f" -> {exc.filename2}" if exc.filename2 else ""
        cause = _HINTS.get(exc.errno or -1) or (exc.strerror or str(exc))
        code = errno.errorcode.get(exc.errno or -1, "")
        where = f"{os.fsdecode(path)}{other}: " if path is not None else ""
        return f"{where}{cause}" + (f" [{code}]" if code else "")
    if type(exc).__module__ == "sqlite3" and type(exc).__name__ == "OperationalError":
        text = str(exc)
        if any(word in text for word in ("disk", "readonly", "unable to open", "I/O")):
            return f"the experiment index (index.sqlite): {text}"
    return None


def _debug(ctx: click.Context) -> bool:
    obj = ctx.find_root().obj or {}
    flag = os.environ.get("CORALX_DEBUG", "")
    return bool(obj.get("debug")) or flag not in ("", "0")


def _debug_traceback(ctx: click.Context) -> None:
    if _debug(ctx):
        import traceback

        traceback.print_exc(file=sys.stderr)


def _show_warning(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    click.echo(f"warning: {message}", err=True)


class _quiet_stdout:
    """Point stdout at /dev/null so the interpreter's flush at exit cannot fail again."""

    def __enter__(self) -> None:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass

    def __exit__(self, *exc: object) -> None:
        return None
