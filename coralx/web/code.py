"""A run's code snapshot for the viewer: its files, and its diff against the git commit.

The snapshot is a git tree stored in ``.coralx``; the commit lives in the user's own git
repository. Both are read with dulwich, read-only.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from ..ids import is_hex

if TYPE_CHECKING:
    from ..repository import Repository

__all__ = ["snapshot_details"]

MAX_DIFF_CHARS = 400_000
MAX_FILE_BYTES = 2_000_000


def _tree_files(object_store: Any, tree_id: bytes) -> dict[str, tuple[int, bytes]]:
    return {
        entry.path.decode("utf-8", "replace"): (entry.mode, entry.sha)
        for entry in object_store.iter_tree_contents(tree_id)
    }


def _open_user_repo(repo: Repository, root: str | None) -> Any:
    """The user's git repository (dulwich): the work tree the run recorded (``code.root``),
    else the one around the store; None outside a git work tree."""
    from pathlib import Path

    from dulwich.repo import Repo

    from ..repository import find_git_dir

    start = Path(root) if root and Path(root).is_dir() else repo.root
    git_dir = find_git_dir(start)
    if git_dir is None:
        return None
    try:
        return Repo(str(git_dir))
    except Exception:  # not a repository dulwich can read: show the snapshot without a diff
        return None


def _commit_files(user: Any, commit: str | None) -> dict[str, tuple[int, bytes]] | None:
    """The files of the user's commit, or None when it cannot be read here."""
    if user is None or not commit or not (len(commit) == 40 and is_hex(commit)):
        return None
    try:
        return _tree_files(user.object_store, user.object_store[commit.encode()].tree)
    except (KeyError, AttributeError):
        return None


def _text(store: Any, sha: bytes | None) -> list[str] | None:
    if sha is None:
        return []
    blob = store[sha]
    data = blob.as_raw_string()
    if len(data) > MAX_FILE_BYTES or b"\0" in data[:8000]:
        return None
    return data.decode("utf-8", "replace").splitlines(keepends=True)


def snapshot_details(
    repo: Repository, snapshot: str, commit: str | None, root: str | None = None
) -> dict[str, Any]:
    """``{"files": [{"path", "size", "change"}], "diff": str | None}`` for a snapshot tree."""
    if not (len(snapshot) == 40 and is_hex(snapshot)):
        return {"files": [], "diff": None, "snapshot_error": "not a tree id"}
    store = repo.git.object_store
    try:
        snap = _tree_files(store, snapshot.encode())
    except KeyError:
        return {"files": [], "diff": None, "snapshot_error": "snapshot tree missing"}
    user = _open_user_repo(repo, root)
    try:
        return _details(store, snap, user, commit)
    finally:
        if user is not None:
            user.close()


def _details(
    store: Any, snap: dict[str, tuple[int, bytes]], user: Any, commit: str | None
) -> dict[str, Any]:
    base = _commit_files(user, commit)
    base_store = user.object_store if user is not None else None
    files = []
    diff_parts: list[str] = []
    size = 0
    for path in sorted(set(snap) | set(base or {})):
        mine = snap.get(path)
        theirs = (base or {}).get(path)
        if base is None:
            change = None
        elif theirs is None:
            change = "added"
        elif mine is None:
            change = "deleted"
        elif mine[1] != theirs[1]:
            change = "modified"
        else:
            change = "unchanged"
        if mine is not None:
            blob = store[mine[1]]
            files.append({"path": path, "size": len(blob.as_raw_string()), "change": change})
        if change in ("added", "deleted", "modified") and size < MAX_DIFF_CHARS:
            part = _diff_one(store, base_store, path, mine, theirs)
            size += len(part)
            diff_parts.append(part)
    diff = "".join(diff_parts) if base is not None else None
    return {"files": files, "diff": diff, "diff_base_found": base is not None}


def _diff_one(
    store: Any,
    base_store: Any,
    path: str,
    mine: tuple[int, bytes] | None,
    theirs: tuple[int, bytes] | None,
) -> str:
    new = _text(store, mine[1] if mine else None)
    old = _text(base_store, theirs[1] if theirs else None)
    if new is None or old is None:
        return f"Binary file {path} differs\n"
    lines = difflib.unified_diff(
        old,
        new,
        fromfile=f"a/{path}" if theirs else "/dev/null",
        tofile=f"b/{path}" if mine else "/dev/null",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
