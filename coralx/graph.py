"""Weight commits, branches and tags as git objects and refs in the store (dulwich).

A weight commit is an ordinary git commit in ``.coralx/``: its tree holds one blob,
``manifest.json`` (see :mod:`coralx.store.manifest`); its message ends with git trailers for
the machine-readable links (``Coralx-Experiment``, ``Coralx-Code-Commit``,
``Coralx-Code-Branch``), so ``git --git-dir=.coralx log`` shows them too.

Refs move by compare-and-swap (:meth:`dulwich.refs.RefsContainer.set_if_equals`) under an
advisory lock: a writer reads the branch head, makes its commit on top, and swaps the ref only
if the head is still what it read, else builds again on the new head. Concurrent committers
to one branch are thus serialised, and none loses a commit.
"""

from __future__ import annotations

import contextlib
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import _fs
from .errors import ConcurrentUpdate, InvalidValue, RevisionNotFound, StoreCorrupted
from .store.manifest import Manifest

__all__ = [
    "MANIFEST_NAME",
    "BranchInfo",
    "TagInfo",
    "WeightCommit",
    "iter_history",
    "make_commit",
    "read_commit",
    "read_manifest",
    "update_ref",
]

MANIFEST_NAME = b"manifest.json"
TRAILERS = {
    "experiment_id": "Coralx-Experiment",
    "code_commit": "Coralx-Code-Commit",
    "code_branch": "Coralx-Code-Branch",
}
_TRAILER_LINE = re.compile(r"^(Coralx-[A-Za-z-]+): (.*)$")
CAS_ATTEMPTS = 200


@dataclass(frozen=True)
class WeightCommit:
    """A weight commit: what ``repo.commit`` returns and ``repo.log`` lists."""

    commit_hash: str
    message: str
    author: str
    timestamp: datetime
    parents: list[str] = field(default_factory=list)
    experiment_id: str | None = None
    code_commit: str | None = None
    code_branch: str | None = None
    tree: str = ""

    @property
    def short_hash(self) -> str:
        return self.commit_hash[:10]

    def to_dict(self) -> dict[str, Any]:
        return {
            "commit_hash": self.commit_hash,
            "message": self.message,
            "author": self.author,
            "timestamp": self.timestamp.isoformat(),
            "parents": list(self.parents),
            "experiment_id": self.experiment_id,
            "code_commit": self.code_commit,
            "code_branch": self.code_branch,
        }


@dataclass(frozen=True)
class BranchInfo:
    name: str
    commit: str
    current: bool

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "commit": self.commit, "current": self.current}


@dataclass(frozen=True)
class TagInfo:
    name: str
    commit: str
    message: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "commit": self.commit, "message": self.message}


def _clean(value: str | None, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or any(c in value for c in "\r\n\x00"):
        raise InvalidValue(f"{what} must be a one-line string, got {value!r:.80}")
    return value


def full_message(message: str, links: dict[str, str | None]) -> bytes:
    """The commit message with the machine-readable links as git trailers."""
    if not isinstance(message, str) or not message.strip():
        raise InvalidValue("a commit needs a message, e.g. repo.commit('epoch 3: loss 0.41')")
    if "\x00" in message:
        raise InvalidValue("a commit message cannot contain NUL characters")
    text = message.strip() + "\n"
    lines = [f"{TRAILERS[k]}: {v}" for k, v in links.items() if _clean(v, k)]
    if lines:
        text += "\n" + "\n".join(lines) + "\n"
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValue("a commit message and its links must be valid unicode") from None


def make_commit(
    git: Any,
    manifest: Manifest,
    message: bytes,
    author: str,
    parents: list[bytes],
    when: int | None = None,
) -> tuple[bytes, bytes]:
    """Write the manifest blob, the tree and the commit; return (commit id, tree id)."""
    from dulwich.objects import Blob, Tree

    store = git.object_store
    blob = Blob.from_string(manifest.to_json())
    tree = Tree()
    tree.add(MANIFEST_NAME, 0o100644, blob.id)
    store.add_object(blob)
    store.add_object(tree)
    commit = _commit_object(tree.id, message, author, parents, when)
    store.add_object(commit)
    return commit.id, tree.id


def _commit_object(
    tree: bytes, message: bytes, author: str, parents: list[bytes], when: int | None
) -> Any:
    from dulwich.objects import Commit

    commit: Any = Commit()
    commit.tree = tree
    commit.parents = parents
    ident = author.encode("utf-8")
    commit.author = commit.committer = ident
    commit.author_time = commit.commit_time = int(time.time()) if when is None else when
    commit.author_timezone = commit.commit_timezone = 0
    commit.encoding = b"UTF-8"
    commit.message = message
    return commit


def update_ref(
    git: Any,
    lock_path: Path,
    ref: bytes,
    build: Callable[[bytes | None], bytes],
) -> bytes:
    """Move ``ref`` to ``build(old_head)`` by compare-and-swap, rebuilding on a race.

    ``build`` gets the ref's current value (None if the ref does not exist yet) and returns
    the new commit id. Writers in coralx hold ``lock_path`` so they take turns; the CAS also
    guards against a writer outside coralx (``git update-ref``). After
    :data:`CAS_ATTEMPTS` lost races, :class:`ConcurrentUpdate` (nothing is lost: the commit
    object exists, only the ref did not move).
    """
    from dulwich.file import FileLocked

    for attempt in range(CAS_ATTEMPTS):
        with _fs.FileLock(lock_path, timeout=120):
            old = _read_ref(git, ref)
            new = build(old)
            try:
                if old is None:
                    if git.refs.add_if_new(ref, new):
                        return new
                elif git.refs.set_if_equals(ref, old, new):
                    return new
            except FileLocked as exc:
                _clear_stale_ref_lock(exc)
        time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
    raise ConcurrentUpdate(
        f"{ref.decode()} kept moving while this process tried to commit to it "
        f"({CAS_ATTEMPTS} attempts); nothing was lost, try the commit again"
    )


STALE_REF_LOCK = 1.0  # seconds: git and dulwich hold a ref's lock file for milliseconds


def _clear_stale_ref_lock(exc: Any) -> None:
    """A ref's ``.lock`` file, met while this process holds coralx's refs lock: either a
    writer outside coralx (``git update-ref``) finishing now, or the leftover of a coralx
    writer killed in the middle of a ref update, which would block every later commit. Wait
    for it to go; if it stays, it is a dead writer's, and is removed."""
    import os

    lock = os.fsdecode(exc.lockfilename)
    deadline = time.monotonic() + STALE_REF_LOCK
    while time.monotonic() < deadline:
        if not os.path.exists(lock):
            return
        time.sleep(0.01)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(lock)


def _read_ref(git: Any, ref: bytes) -> bytes | None:
    try:
        if ref == b"HEAD":
            return git.refs[b"HEAD"]
        value = git.refs.read_ref(ref)
    except KeyError:
        return None
    if value is None or value.startswith(b"ref: "):
        return None
    return value


def read_commit(git: Any, commit_id: str | bytes) -> WeightCommit:
    """Parse a commit object into a :class:`WeightCommit`."""
    from dulwich.objects import Commit

    cid = commit_id.encode("ascii") if isinstance(commit_id, str) else commit_id
    try:
        obj = git.object_store[cid]
    except KeyError:
        raise RevisionNotFound(cid.decode("ascii", "replace")) from None
    if not isinstance(obj, Commit):
        raise RevisionNotFound(cid.decode("ascii", "replace"), "it is not a commit")
    text = obj.message.decode("utf-8", errors="replace")
    message, links = _split_trailers(text)
    return WeightCommit(
        commit_hash=obj.id.decode("ascii"),
        message=message,
        author=obj.author.decode("utf-8", errors="replace"),
        timestamp=datetime.fromtimestamp(obj.author_time, tz=UTC),
        parents=[p.decode("ascii") for p in obj.parents],
        experiment_id=links.get("experiment_id"),
        code_commit=links.get("code_commit"),
        code_branch=links.get("code_branch"),
        tree=obj.tree.decode("ascii"),
    )


def _split_trailers(text: str) -> tuple[str, dict[str, str]]:
    body = text.rstrip("\n")
    paragraphs = body.rsplit("\n\n", 1)
    if len(paragraphs) == 2:
        lines = paragraphs[1].split("\n")
        matches = [_TRAILER_LINE.match(line) for line in lines]
        if all(matches):
            by_name = {v: k for k, v in TRAILERS.items()}
            links = {
                by_name[m.group(1)]: m.group(2) for m in matches if m and m.group(1) in by_name
            }
            return paragraphs[0], links
    return body, {}


def read_manifest(git: Any, commit_id: str | bytes) -> Manifest | None:
    """The manifest of a weight commit, or None for a commit without one (the root)."""
    from dulwich.objects import Blob, Commit, Tree

    cid = commit_id.encode("ascii") if isinstance(commit_id, str) else commit_id
    try:
        commit = git.object_store[cid]
        assert isinstance(commit, Commit)
        tree = git.object_store[commit.tree]
        assert isinstance(tree, Tree)
    except (KeyError, AssertionError):
        raise StoreCorrupted(f"commit {cid.decode()} or its tree is missing or damaged") from None
    if MANIFEST_NAME not in tree:
        return None
    _mode, blob_id = tree[MANIFEST_NAME]
    try:
        blob = git.object_store[blob_id]
    except KeyError:
        raise StoreCorrupted(f"the manifest of commit {cid.decode()} is missing") from None
    if not isinstance(blob, Blob):
        raise StoreCorrupted(f"the manifest of commit {cid.decode()} is not a blob")
    return Manifest.from_json(blob.as_raw_string())


def iter_history(git: Any, start: str, limit: int | None = None) -> Iterator[WeightCommit]:
    """Commits reachable from ``start``, newest first (by commit time, then topology)."""
    walker = git.get_walker(include=[start.encode("ascii")], max_entries=limit)
    for entry in walker:
        yield read_commit(git, entry.commit.id)


def iter_ancestors(git: Any, starts: list[str]) -> Iterator[str]:
    """Every commit id reachable from ``starts`` (including them)."""
    if not starts:
        return
    for entry in git.get_walker(include=[s.encode("ascii") for s in starts]):
        yield entry.commit.id.decode("ascii")
