"""The weights page's data: branches, tags, history, and per commit its diff and sizes.

Refs and commits are read from the store's git metadata with dulwich; tensor contents go
through the Repository's own read API, so every chunk read is verified.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RevisionNotFound
from ..ids import is_hex

if TYPE_CHECKING:
    from ..repository import Repository

__all__ = ["commit_details", "export", "overview"]

MAX_LOG = 500


def _commit_info(commit: Any) -> dict[str, Any]:
    message = commit.message.decode("utf-8", "replace")
    return {
        "commit_hash": commit.id.decode("ascii"),
        "summary": message.splitlines()[0] if message else "",
        "message": message,
        "author": commit.author.decode("utf-8", "replace"),
        "timestamp": datetime.fromtimestamp(commit.commit_time, UTC).isoformat(),
        "parents": [p.decode("ascii") for p in commit.parents],
    }


def overview(repo: Repository) -> dict[str, Any]:
    """Branches and tags with the commits they point to, and the history of all branches."""
    refs = repo.git.refs.as_dict()
    branches = {
        k[len(b"refs/heads/") :].decode(): v.decode()
        for k, v in refs.items()
        if k.startswith(b"refs/heads/")
    }
    tags = {
        k[len(b"refs/tags/") :].decode(): _peel(repo, v).decode()
        for k, v in refs.items()
        if k.startswith(b"refs/tags/")
    }
    heads: Any = [v.encode() for v in branches.values()]
    commits: list[dict[str, Any]] = []
    if heads:
        walker = repo.git.get_walker(include=heads, max_entries=MAX_LOG)
        commits = [_commit_info(entry.commit) for entry in walker]
    labels: dict[str, list[str]] = {}
    for name, sha in branches.items():
        labels.setdefault(sha, []).append(name)
    for name, sha in tags.items():
        labels.setdefault(sha, []).append(f"tag: {name}")
    for info in commits:
        info["refs"] = labels.get(info["commit_hash"], [])
    return {
        "current_branch": repo.current_branch(),
        "branches": [{"name": n, "commit_hash": s} for n, s in sorted(branches.items())],
        "tags": [{"name": n, "commit_hash": s} for n, s in sorted(tags.items())],
        "commits": commits,
        "truncated": len(commits) >= MAX_LOG,
    }


def _peel(repo: Repository, sha: bytes) -> bytes:
    """The commit an annotated tag points to (a lightweight tag is the commit itself)."""
    store: Any = repo.git.object_store
    obj = store[sha]
    while obj.type_name == b"tag":
        obj = store[obj.object[1]]
    return bytes(obj.id)


def _resolve(repo: Repository, rev: str) -> str:
    text = rev.strip().lower()
    if len(text) != 40 or not is_hex(text):
        raise RevisionNotFound(rev, "the weights page takes full 40-digit commit ids")
    store: Any = repo.git.object_store
    try:
        commit = store[text.encode()]
    except KeyError:
        raise RevisionNotFound(rev) from None
    if commit.type_name != b"commit":
        raise RevisionNotFound(rev, "that id is not a commit")
    return text


def commit_details(repo: Repository, rev: str) -> dict[str, Any]:
    """One commit: its metadata, the diff of its tensors against its first parent, and the
    bytes its tensors take raw and as stored."""
    sha = _resolve(repo, rev)
    store: Any = repo.git.object_store
    info = _commit_info(store[sha.encode()])
    info["diff"] = _diff_stats(repo, sha, info["parents"][0] if info["parents"] else None)
    info["sizes"] = _sizes(repo, sha)
    return info


def _diff_stats(repo: Repository, sha: str, parent: str | None) -> list[dict[str, Any]]:
    """Per tensor: added/removed/changed, max |change| and the fraction of elements changed."""
    import numpy as np

    new = _weights(repo, sha)
    old = _weights(repo, parent) if parent else {}
    out = []
    for name in sorted(set(new) | set(old)):
        a, b = old.get(name), new.get(name)
        row: dict[str, Any] = {"name": name}
        if a is None or b is None:
            row["change"] = "added" if a is None else "removed"
        elif a.shape != b.shape or a.dtype != b.dtype:
            row["change"] = "reshaped"
            row["shape"] = [list(a.shape), list(b.shape)]
        else:
            differs = a.view(np.uint8) != b.view(np.uint8)
            changed = bool(differs.any())
            row["change"] = "changed" if changed else "same"
            if changed and a.dtype.kind in "fiu":
                delta = np.abs(b.astype(np.float64) - a.astype(np.float64))
                row["max_abs_change"] = float(np.nanmax(delta)) if delta.size else 0.0
                row["fraction_changed"] = float(np.mean(a != b)) if a.size else 0.0
            else:
                row["max_abs_change"] = 0.0 if not changed else None
                row["fraction_changed"] = 0.0 if not changed else None
        out.append(row)
    return out


def _weights(repo: Repository, rev: str) -> dict[str, Any]:
    getter = getattr(repo, "get_all_weights", None)
    if getter is None:
        return {}
    try:
        return dict(getter(rev))
    except RevisionNotFound:
        return {}


def _sizes(repo: Repository, sha: str) -> dict[str, Any] | None:
    """Raw and stored bytes of a commit's tensors, from the store's own accounting."""
    du = getattr(repo, "du", None)
    if du is None:
        return None
    result = du(sha)
    return result.to_dict() if hasattr(result, "to_dict") else dict(result)


def export(repo: Repository, rev: str, dest: Path) -> str:
    """Write a commit's weights to ``dest`` as safetensors; return the commit id."""
    sha = _resolve(repo, rev)
    repo.export(sha, dest)  # type: ignore[attr-defined]
    return sha
