"""Who is writing: the author line of weight commits, and the host/pid of a run."""

from __future__ import annotations

import configparser
import getpass
import os
import socket
from functools import lru_cache
from pathlib import Path

__all__ = ["author_identity", "hostname", "pid_alive", "process_start_time"]


@lru_cache(maxsize=1)
def hostname() -> str:
    return socket.gethostname() or "localhost"


@lru_cache(maxsize=1)
def host_tag() -> str:
    """8 hex digits standing for this machine's name, short enough to put in file names."""
    import hashlib

    return hashlib.blake2s(hostname().encode("utf-8"), digest_size=4).hexdigest()


@lru_cache(maxsize=64)
def author_identity(work_tree: str | None = None) -> str:
    """``Name <email>`` from ``CORALX_AUTHOR_NAME``/``_EMAIL``, git's environment, the git
    config of ``work_tree`` (the work tree a run came from: its local config, then the
    global one, as ``git commit`` there would), else the login name at this host. Reads
    files only: no ``git`` program needed.

    >>> author_identity("/home/me/project")
    'Me <me@example.org>'
    """
    name = os.environ.get("CORALX_AUTHOR_NAME") or os.environ.get("GIT_AUTHOR_NAME")
    email = os.environ.get("CORALX_AUTHOR_EMAIL") or os.environ.get("GIT_AUTHOR_EMAIL")
    for cfg_name, cfg_email in (_git_local_user(work_tree), _git_global_user()):
        if name and email:
            break
        name = name or cfg_name
        email = email or cfg_email
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = "coralx"
    if not email:
        email = f"{name}@{hostname()}"
    clean = "".join(c for c in f"{name} <{email}>" if c not in "\n\r\0")
    return clean


def _git_local_user(work_tree: str | None) -> tuple[str | None, str | None]:
    """``user.name``/``user.email`` from a work tree's own git config (a linked worktree's
    ``config.worktree`` first, then the repository's ``config``)."""
    if not work_tree:
        return None, None
    dot_git = Path(work_tree) / ".git"
    files: list[Path] = []
    if dot_git.is_dir():
        files = [dot_git / "config.worktree", dot_git / "config"]
    elif dot_git.is_file():
        text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
        if text.startswith("gitdir:"):
            gitdir = (Path(work_tree) / text[len("gitdir:") :].strip()).resolve()
            common = gitdir
            if (gitdir / "commondir").is_file():
                common = (gitdir / (gitdir / "commondir").read_text().strip()).resolve()
            files = [gitdir / "config.worktree", common / "config"]
    return _read_user(files)


def _read_user(paths: list[Path]) -> tuple[str | None, str | None]:
    name = email = None
    for path in paths:
        if not path.is_file():
            continue
        parser = configparser.RawConfigParser(strict=False)
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError, OSError):
            continue
        if parser.has_section("user"):
            name = name or parser.get("user", "name", fallback=None)
            email = email or parser.get("user", "email", fallback=None)
    return (name.strip('"') if name else None, email.strip('"') if email else None)


def _git_global_user() -> tuple[str | None, str | None]:
    candidates = []
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg:
        candidates.append(Path(xdg) / "git" / "config")
    candidates.append(Path.home() / ".config" / "git" / "config")
    candidates.append(Path.home() / ".gitconfig")
    return _read_user(candidates)


def process_start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, Linux), to tell a reused pid
    from the process that wrote a record; None where /proc is not available."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) < 20 or fields[0] == b"Z":
        return None
    return int(fields[19])


def pid_alive(pid: int, start: int | None = None) -> bool:
    """Whether process ``pid`` on this host is alive and, when ``start`` is given, is the
    same process that started at ``start`` (not a later one that reused its pid)."""
    if pid <= 0:
        return False
    if os.path.isdir("/proc/self"):
        now_start = process_start_time(pid)
        if now_start is None:
            return False  # gone, or a zombie nobody waited for
        return start is None or now_start == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
