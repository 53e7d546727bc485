"""The weights page's data: branches, tags, history, and per commit its diff and sizes.

Everything goes through the Repository's weight API (branches, tags, log, diff, export), so
every chunk read is verified; the per-commit sizes read the commit's manifest and the encoded
size of its chunks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RevisionNotFound, StoreCorrupted

if TYPE_CHECKING:
    from ..repository import Repository

__all__ = ["commit_details", "export", "overview"]

MAX_LOG = 500


def _commit_dict(commit: Any) -> dict[str, Any]:
    info: dict[str, Any] = commit.to_dict()
    message = str(info.get("message") or "")
    info["summary"] = message.splitlines()[0] if message else ""
    return info


def overview(repo: Repository) -> dict[str, Any]:
    """Branches and tags with the commits they point to, and the history of all branches
    and run lines, newest first."""
    branches = [b.to_dict() for b in repo.branches()]
    tags = [t.to_dict() for t in repo.tags()]
    commits: dict[str, dict[str, Any]] = {}
    heads = [b["commit"] for b in branches] + list(repo.run_lines().values())
    for head in heads:  # branches and each run's own line of commits
        for commit in repo.log(head, limit=MAX_LOG):
            commits.setdefault(commit.commit_hash, _commit_dict(commit))
    history = sorted(commits.values(), key=lambda c: str(c.get("timestamp")), reverse=True)
    labels: dict[str, list[str]] = {}
    for b in branches:
        labels.setdefault(b["commit"], []).append(b["name"])
    for t in tags:
        labels.setdefault(t["commit"], []).append(f"tag: {t['name']}")
    for info in history:
        info["refs"] = labels.get(info["commit_hash"], [])
    return {
        "current_branch": repo.current_branch(),
        "branches": [{"name": b["name"], "commit_hash": b["commit"]} for b in branches],
        "tags": [{"name": t["name"], "commit_hash": t["commit"]} for t in tags],
        "commits": history[:MAX_LOG],
        "truncated": len(history) > MAX_LOG,
    }


def _resolve(repo: Repository, rev: str) -> str:
    """The commit a revision names, taking what the CLI takes (and shows): a full or short
    commit id, a branch, a tag, ``HEAD~1``; ``Repository.resolve`` checks names before any
    lookup, so nothing outside the store's refs is reached."""
    text = rev.strip()
    if not text or len(text) > 256:
        raise RevisionNotFound(rev, "give a commit id (full or short), a branch or a tag")
    return repo.resolve(text)


def commit_details(repo: Repository, rev: str) -> dict[str, Any]:
    """One commit: its metadata, the diff of its tensors against its first parent, and the
    bytes its tensors take raw and as stored."""
    sha = _resolve(repo, rev)
    [commit] = repo.log(sha, limit=1)
    info = _commit_dict(commit)
    parent = commit.parents[0] if commit.parents else None
    info["diff"] = _diff_rows(repo, parent, sha)
    info["sizes"] = _sizes(repo, sha, parent)
    return info


def _diff_rows(repo: Repository, parent: str | None, sha: str) -> list[dict[str, Any]]:
    """Per tensor: added, removed, changed (max |change|, fraction changed) or same."""
    if parent is None:
        manifest = repo.weights.manifest(sha)
        names = list(manifest.tensors) if manifest is not None else []
        return [{"name": n, "change": "added"} for n in names]
    diff = repo.diff(parent, sha)
    rows: list[dict[str, Any]] = [{"name": n, "change": "added"} for n in diff.added]
    rows += [{"name": n, "change": "removed"} for n in diff.removed]
    for change in diff.changed:
        row = change.to_dict()
        row["change"] = "changed"
        rows.append(row)
    rows += [
        {"name": n, "change": "same", "max_abs_change": 0.0, "fraction_changed": 0.0}
        for n in diff.unchanged
    ]
    rows.sort(key=lambda r: str(r["name"]))
    return rows


def _sizes(repo: Repository, sha: str, parent: str | None) -> dict[str, Any]:
    """Raw bytes of the commit's tensors; stored bytes of its chunks; and what it added:
    the chunks its parent did not have."""
    weights = repo.weights
    manifest = weights.manifest(sha)
    if manifest is None:
        return {"raw_bytes": 0, "stored_bytes": 0, "chunks": 0}
    chunks = manifest.chunk_ids()
    before = weights.manifest(parent) if parent else None
    new = chunks - (before.chunk_ids() if before is not None else set())
    sizes = {cid: _encoded_size(weights, cid) for cid in chunks}
    stored = sum(sizes.values())
    return {
        "raw_bytes": manifest.nbytes,
        "stored_bytes": stored,
        "stored_fraction": stored / manifest.nbytes if manifest.nbytes else 0.0,
        "chunks": len(chunks),
        "new_chunks": len(new),
        "new_stored_bytes": sum(sizes[c] for c in new),
    }


def _encoded_size(weights: Any, chunk_id: str) -> int:
    """A chunk's size on disk; 0 for a missing chunk (fsck reports those, not the viewer)."""
    try:
        return int(weights.chunks.encoded_size(chunk_id))
    except (KeyError, StoreCorrupted):
        return 0


def export(repo: Repository, rev: str, dest: Path) -> str:
    """Write a commit's weights to ``dest`` as safetensors; return the commit id."""
    sha = _resolve(repo, rev)
    repo.export(sha, dest)
    return sha
