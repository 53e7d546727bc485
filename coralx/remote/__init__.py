"""Remotes: share a store between machines and a team, through a folder or S3.

>>> repo.add_remote("origin", "s3://team-bucket/projects/bert")   # or a folder path
>>> repo.push("origin")          # only what the remote lacks; refs move last, by CAS
>>> repo.pull("origin")          # fetch (verified) + fast-forward the current branch
>>> Repository.clone("s3://team-bucket/projects/bert", "bert")

Remotes are listed in ``.coralx/remotes.json`` (name, URL, endpoint URL: never a secret;
S3 credentials come from the standard AWS chain). What is known to be on each remote is kept
in ``.coralx/remotes/<name>/``. See :mod:`coralx.remote.sync` for what travels and in which
order.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from .. import _fs
from ..errors import InvalidName, InvalidValue, RemoteNotFound

if TYPE_CHECKING:
    from ..repository import Repository
    from .sync import PullReport, PushReport, RemoteStore

__all__ = [
    "add_remote",
    "fetch",
    "list_remotes",
    "open_remote",
    "pull",
    "push",
    "remove_remote",
]

REMOTES_FILE = "remotes.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _read(repo: Repository) -> dict[str, dict[str, Any]]:
    try:
        doc = json.loads((repo.path / REMOTES_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError:
        raise InvalidValue(f"{repo.path / REMOTES_FILE} is unreadable; fix or remove it") from None
    return {k: v for k, v in doc.get("remotes", {}).items() if isinstance(v, dict)}


def _write(repo: Repository, remotes: dict[str, dict[str, Any]]) -> None:
    _fs.atomic_write(repo.path / REMOTES_FILE, json.dumps({"remotes": remotes}, indent=1))


def check_remote_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidName("remote", name, "use letters, digits, '-' and '_' (up to 64)")
    return name


def add_remote(
    repo: Repository, name: str, url: str, endpoint_url: str | None = None
) -> dict[str, Any]:
    """Remember a remote: a folder path, ``file:///path`` or ``s3://bucket/prefix``."""
    from .transport import parse_url

    check_remote_name(name)
    kind, _where, _prefix = parse_url(url)
    if kind == "s3":
        import importlib.util

        from ..errors import MissingDependency

        if importlib.util.find_spec("obstore") is None:
            raise MissingDependency("obstore", "an s3:// remote", "s3")
    with _fs.FileLock(repo.path / "remotes.lock", timeout=30):
        remotes = _read(repo)
        if name in remotes:
            raise InvalidName("remote", name, "it exists already; remove it first")
        entry: dict[str, Any] = {"url": url.strip(), "kind": kind}
        if endpoint_url:
            entry["endpoint_url"] = endpoint_url
        remotes[name] = entry
        _write(repo, remotes)
    return {"name": name, **entry}


def remove_remote(repo: Repository, name: str) -> None:
    """Forget a remote (and what was known about it here); the remote is not touched."""
    import shutil

    with _fs.FileLock(repo.path / "remotes.lock", timeout=30):
        remotes = _read(repo)
        if name not in remotes:
            raise RemoteNotFound(name, sorted(remotes))
        del remotes[name]
        _write(repo, remotes)
    if _NAME.match(name):
        shutil.rmtree(repo.path / "remotes" / name, ignore_errors=True)


def list_remotes(repo: Repository) -> list[dict[str, Any]]:
    return [{"name": n, **v} for n, v in sorted(_read(repo).items())]


def open_remote(repo: Repository, name: str) -> RemoteStore:
    from .sync import RemoteStore
    from .transport import open_transport

    remotes = _read(repo)
    if name not in remotes:
        raise RemoteNotFound(name, sorted(remotes))
    entry = remotes[name]
    return RemoteStore(name, open_transport(entry["url"], entry.get("endpoint_url")))


def push(
    repo: Repository, name: str = "origin", branches: list[str] | None = None, force: bool = False
) -> PushReport:
    from . import sync

    return sync.push(repo, open_remote(repo, name), branches, force)


def fetch(repo: Repository, name: str = "origin") -> PullReport:
    from . import sync

    return sync.fetch(repo, open_remote(repo, name))


def pull(repo: Repository, name: str = "origin") -> PullReport:
    """Fetch, then fast-forward the current branch to the remote's branch of that name."""
    from .. import graph
    from . import sync

    report = sync.fetch(repo, open_remote(repo, name))
    branch = repo.current_branch()
    if branch is None:
        return report
    refs = graph.LocalRefs(repo.git)
    theirs = refs.resolve_ref(f"refs/remotes/{name}/{branch}".encode())
    ours = refs.resolve_ref(f"refs/heads/{branch}".encode())
    if theirs is None or theirs == ours:
        return report
    if ours is None or is_empty_root(repo.git, ours) or sync._is_ancestor(repo.git, ours, theirs):
        graph.swap(refs, f"refs/heads/{branch}".encode(), ours, theirs)
        report.updated_branch = branch
    elif not sync._is_ancestor(repo.git, theirs, ours):
        report.note = (
            f"{branch} and {name}/{branch} have diverged; both are kept "
            f"(see `coralx log {name}/{branch}`)"
        )
    return report


def is_empty_root(git: Any, sha: bytes) -> bool:
    """True for a store's own first commit (no parents, no weights): it carries nothing, so
    a branch still there is fast-forwarded to the remote's, and never pushed."""
    from dulwich.objects import Commit

    try:
        obj = git.object_store[sha]
    except KeyError:
        return False
    if not isinstance(obj, Commit) or obj.parents:
        return False
    tree = git.object_store[obj.tree]
    return len(tree) == 0
