"""Weight commits, branches and tags as git objects and refs in the store (dulwich).

A weight commit is an ordinary git commit in ``.coralx/``: its tree holds one blob,
``manifest.json`` (see :mod:`coralx.store.manifest`); its message ends with git trailers for
the machine-readable links (``Coralx-Experiment``, ``Coralx-Code-Commit``,
``Coralx-Code-Branch``), so ``git --git-dir=.coralx log`` shows them too.

Every ref move, local or remote, is one compare-and-swap, :func:`swap` ("set REF to NEW if
it is still OLD", else :class:`~coralx.errors.ConcurrentUpdate`), over a :class:`RefStore`
that implements the atomic primitive once: :class:`LocalRefs` for a git folder (git's own
``REF.lock``), the S3 remote with conditional writes. A committer (:func:`update_ref`) reads
the head, builds its commit on top and swaps, building again on a lost race, so concurrent
committers are serialised and none loses a commit.

Each run's weight commits form their own line under ``refs/runs/<experiment id>``; branches
move only when the user commits outside a run or names the branch (see
``docs/architecture.md``). :class:`Graph` resolves revisions (ids, branches, tags,
``origin/NAME``, run ids, ``~n``) and moves HEAD, branches and tags.
"""

from __future__ import annotations

import abc
import contextlib
import os
import random
import re
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import _fs
from .errors import (
    AmbiguousRevision,
    ConcurrentUpdate,
    InvalidName,
    InvalidValue,
    RevisionNotFound,
    StoreCorrupted,
)
from .ids import check_ref_name, is_hex
from .store.manifest import Manifest

__all__ = [
    "MANIFEST_NAME",
    "BranchInfo",
    "Graph",
    "LocalRefs",
    "RefStore",
    "TagInfo",
    "WeightCommit",
    "iter_history",
    "make_commit",
    "read_commit",
    "read_manifest",
    "run_ref",
    "swap",
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


PACK_AT = 32
"""New git objects from which they are written as one pack, not loose files."""


def write_objects(store: Any, objects: list[Any]) -> None:
    """Write new ``objects`` into a git object store: from :data:`PACK_AT` objects on as one
    pack and its index (two files, each fsync'd), else as loose files. Each loose object is a
    file and an fsync of its own: a fetch of a few hundred objects took a third of a second
    that way, on top of a pull of 155 MB that took 1.5."""
    if len(objects) >= PACK_AT:
        store.add_objects([(obj, None) for obj in objects])
    else:
        for obj in objects:
            store.add_object(obj)


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


# -- refs: every move is one compare-and-swap ---------------------------------------------------
#
# A ref's value is a 40-hex commit (or tag) id, or, for a symbolic ref (HEAD attached to a
# branch), ``ref: refs/heads/NAME``. Every writer in coralx, local or remote, moves a ref with
# :func:`swap`: "set REF to NEW if it is still OLD". Each place refs live implements the atomic
# primitive once (:class:`LocalRefs` for a git folder, the S3 remote with conditional writes).

REF_NAMESPACES = ("refs/heads/", "refs/tags/", "refs/runs/", "refs/remotes/")
ZERO = None  # the value of a ref that does not exist
_SHA = re.compile(rb"^[0-9a-f]{40}$")


class RefStore(abc.ABC):
    """Where refs live. ``read`` gives a ref's raw value (None if absent); ``_swap`` is the
    one atomic primitive: set ``ref`` to ``new`` (None deletes it) only if it is ``old``."""

    @abc.abstractmethod
    def read(self, ref: bytes) -> bytes | None:
        """The ref's raw value: a 40-hex id, ``ref: ...`` for a symbolic ref, or None."""

    @abc.abstractmethod
    def _swap(self, ref: bytes, old: bytes | None, new: bytes | None) -> bool:
        """Atomically replace ``old`` by ``new``; False (nothing changed) if it was not ``old``."""

    @abc.abstractmethod
    def names(self, prefix: bytes = b"refs/") -> dict[bytes, bytes]:
        """Every ref under ``prefix`` with its (non-symbolic) value."""

    def resolve_ref(self, ref: bytes) -> bytes | None:
        """The id a ref ends at, following symbolic refs (HEAD -> refs/heads/main)."""
        seen = 0
        value = self.read(ref)
        while value is not None and value.startswith(b"ref: ") and seen < 5:
            value = self.read(value[5:].strip())
            seen += 1
        return value if value is not None and _SHA.match(value) else None


def check_ref(ref: bytes) -> bytes:
    """``ref`` if it is ``HEAD`` or a valid name in one of coralx's namespaces, else raise."""
    if ref == b"HEAD":
        return ref
    text = ref.decode("utf-8", "replace")
    for space in REF_NAMESPACES:
        if text.startswith(space):
            check_ref_name(text[len(space) :], space.split("/")[1].rstrip("s"))
            return ref
    raise InvalidName("ref", text, f"refs live under {', '.join(REF_NAMESPACES)}")


def _check_value(value: bytes | None) -> None:
    if value is None or _SHA.match(value):
        return
    if value.startswith(b"ref: refs/heads/"):
        check_ref(value[5:])
        return
    raise InvalidValue(f"{value!r:.60} is not a commit id or a symbolic ref")


def swap(refs: RefStore, ref: bytes, old: bytes | None, new: bytes | None) -> None:
    """Move ``ref`` from ``old`` to ``new`` (None: absent), or raise :class:`ConcurrentUpdate`
    naming what it is now. The one way coralx moves any ref, local or remote.

    >>> swap(refs, b"refs/heads/main", old_id, new_id)
    """
    check_ref(ref)
    _check_value(old)
    _check_value(new)
    if old == new:
        if refs.read(ref) == old:
            return
    elif refs._swap(ref, old, new):
        return
    now = refs.read(ref)
    raise ConcurrentUpdate(
        f"{ref.decode()} moved: expected {_show(old)}, found {_show(now)}; "
        "another writer updated it first (nothing was lost: read it again and retry)"
    )


def _show(value: bytes | None) -> str:
    if value is None:
        return "no ref"
    return value.decode("ascii", "replace")[:40]


def update_ref(
    refs: RefStore,
    lock_path: Path | None,
    ref: bytes,
    build: Callable[[bytes | None], bytes],
) -> bytes:
    """Move ``ref`` to ``build(old_head)`` by compare-and-swap, rebuilding on a race.

    ``build`` gets the ref's current id (None if the ref does not exist yet) and returns the
    new commit id. Writers in coralx hold ``lock_path`` so they take turns (none wastes a
    build); the CAS also guards against a writer outside coralx (``git update-ref``). After
    :data:`CAS_ATTEMPTS` lost races, :class:`ConcurrentUpdate` (nothing is lost: the commit
    object exists, only the ref did not move).
    """
    for attempt in range(CAS_ATTEMPTS):
        with _fs.FileLock(lock_path, timeout=120) if lock_path else contextlib.nullcontext():
            raw = refs.read(ref)
            target = raw[5:].strip() if raw is not None and raw.startswith(b"ref: ") else ref
            old = refs.resolve_ref(target)
            new = build(old)
            try:
                swap(refs, target, old, new)
                return new
            except ConcurrentUpdate:
                pass
        time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
    raise ConcurrentUpdate(
        f"{ref.decode()} kept moving while this process tried to commit to it "
        f"({CAS_ATTEMPTS} attempts); nothing was lost, try the commit again"
    )


class LocalRefs(RefStore):
    """The refs of a git folder (the store's ``.coralx/``, or a bare folder remote).

    The primitive takes git's own lock file (``REF.lock``, created exclusively), reads the
    ref again while holding it, and renames the new value into place (fsync'd), so it is
    atomic against other coralx processes and against ``git update-ref`` alike.
    """

    def __init__(self, git: Any) -> None:
        self.git = git
        self.root = Path(git.controldir())

    def read(self, ref: bytes) -> bytes | None:
        check_ref(ref)
        try:
            value = self.git.refs.read_ref(ref)
        except KeyError:
            return None
        return bytes(value) if value is not None else None

    def names(self, prefix: bytes = b"refs/") -> dict[bytes, bytes]:
        space = prefix.rstrip(b"/")
        found = self.git.refs.as_dict(space)
        return {space + b"/" + k: bytes(v) for k, v in found.items()}

    def _swap(self, ref: bytes, old: bytes | None, new: bytes | None) -> bool:
        from dulwich.file import FileLocked, GitFile

        if new is None:  # a deletion: dulwich's own compare-and-delete (packed refs too)
            return old is not None and bool(self.git.refs.remove_if_equals(ref, old))
        path = self.root / ref.decode("utf-8")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            f = GitFile(str(path), "wb")
        except FileLocked as exc:
            # Another writer holds git's lock on this ref right now, or a writer killed in
            # the middle of an update left it: the caller retries either way.
            _clear_stale_ref_lock(exc)
            return False
        with f:
            if self.read(ref) != old:
                f.abort()
                return False
            f.write(new + b"\n")
        return True


# -- the commit graph of a store: revisions, HEAD, branches, tags, run lines -------------------

_SUFFIX = re.compile(r"(~\d*|\^)+$")


class RunLookup(typing.Protocol):
    """How the graph finds runs named in revisions (the store's experiment records)."""

    def with_prefix(self, prefix: str) -> list[str]:
        """Experiment ids starting with ``prefix``."""

    def commit_of(self, experiment_id: str) -> str | None:
        """The weight commit a run's record names (its chosen or last one), if any."""


def run_ref(experiment_id: str) -> bytes:
    """The ref of a run's line of weight commits: ``refs/runs/<experiment id>``."""
    from .ids import check_experiment_id

    return f"refs/runs/{check_experiment_id(experiment_id)}".encode()


class Graph:
    """The refs and history of one store: resolving revisions, HEAD, branches, tags, run lines.

    >>> g = Graph(repo.git, repo.path / "refs.lock", runs)
    >>> g.resolve("origin/main~2")
    """

    def __init__(self, git: Any, lock_path: Path, runs: RunLookup | None = None) -> None:
        self.git = git
        self.refs = LocalRefs(git)
        self.lock_path = lock_path
        self.runs = runs

    def _lock(self) -> _fs.FileLock:
        return _fs.FileLock(self.lock_path, timeout=120)

    def head(self) -> str | None:
        value = self.refs.resolve_ref(b"HEAD")
        return value.decode("ascii") if value else None

    def current_branch(self) -> str | None:
        raw = self.refs.read(b"HEAD") or b""
        prefix = b"ref: refs/heads/"
        return raw[len(prefix) :].strip().decode("utf-8") if raw.startswith(prefix) else None

    def commit_to(self, ref: bytes, build: Callable[[bytes | None], bytes]) -> bytes:
        """Move ``ref`` (or the branch HEAD is attached to) to ``build(old)``; see
        :func:`update_ref`."""
        return update_ref(self.refs, self.lock_path, ref, build)

    # -- revisions ------------------------------------------------------------------------

    def resolve(self, rev: str) -> str:
        """A commit id for a revision: a full or short commit id, ``HEAD``/``@``, a branch,
        a tag, a fetched branch (``origin/main``), a run id (or a prefix of one), each with
        ``~n`` / ``^`` suffixes. A run's ``RUN~1`` is the run's previous commit."""
        if not isinstance(rev, str) or not rev.strip():
            raise RevisionNotFound(str(rev), "give a commit id, branch, tag or experiment id")
        rev = rev.strip()
        match = _SUFFIX.search(rev)
        base, steps = (rev[: match.start()], _count_steps(match.group(0))) if match else (rev, 0)
        commit = self._resolve_base(base, rev)
        for i in range(steps):
            parents = read_commit(self.git, commit).parents
            if not parents:
                raise RevisionNotFound(rev, f"the history has only {i + 1} commit(s) there")
            commit = parents[0]
        return commit

    def _resolve_base(self, base: str, rev: str) -> str:
        if base in ("HEAD", "@"):
            head = self.head()
            if head is None:
                raise RevisionNotFound(rev, "HEAD has no commit yet")
            return head
        if _valid_ref_name(base):
            names = [f"refs/heads/{base}", f"refs/tags/{base}", f"refs/remotes/{base}", base]
            for name in names:
                if not name.startswith(REF_NAMESPACES):
                    continue
                value = self.refs.resolve_ref(name.encode("utf-8"))
                if value is not None:
                    return self.peel(value)
        if is_hex(base.lower()) and len(base) >= 4:
            return self._resolve_hex(base.lower(), rev)
        raise RevisionNotFound(rev)

    def peel(self, sha: bytes) -> str:
        """The commit a ref value names (through annotated tags)."""
        from dulwich.objects import Commit, Tag

        try:
            obj = self.git.object_store[sha]
            while isinstance(obj, Tag):
                obj = self.git.object_store[obj.object[1]]
        except KeyError:
            raise RevisionNotFound(sha.decode(), "the object it names is missing") from None
        if not isinstance(obj, Commit):
            raise RevisionNotFound(sha.decode(), "it does not name a commit")
        return str(obj.id.decode("ascii"))

    def _resolve_hex(self, prefix: str, rev: str) -> str:
        from dulwich.objects import Commit

        commits: list[str] = []
        if len(prefix) <= 40:
            for sha in self.git.object_store.iter_prefix(prefix.encode("ascii")):
                try:
                    if isinstance(self.git.object_store[sha], Commit):
                        commits.append(sha.decode("ascii"))
                except KeyError:
                    continue
        runs = self.runs.with_prefix(prefix) if self.runs and len(prefix) <= 20 else []
        candidates = commits + [f"experiment {e}" for e in runs]
        if len(candidates) > 1:
            raise AmbiguousRevision(rev, candidates)
        if commits:
            return commits[0]
        if runs:
            return self.run_commit(runs[0], rev)
        raise RevisionNotFound(rev)

    def run_commit(self, experiment_id: str, rev: str | None = None) -> str:
        """The commit a run id names: the commit its record chose, else its run line's head."""
        named = self.runs.commit_of(experiment_id) if self.runs else None
        if named and is_hex(named.lower()):
            return self._resolve_hex(named.lower(), rev or experiment_id)
        line = self.refs.resolve_ref(run_ref(experiment_id))
        if line is not None:
            return self.peel(line)
        raise RevisionNotFound(
            rev or experiment_id, f"experiment {experiment_id} has no weight commit"
        )

    def run_id(self, text: str) -> str:
        """The full experiment id ``text`` names (a full id, or an unambiguous prefix)."""
        low = text.strip().lower()
        if not (is_hex(low) and 4 <= len(low) <= 20):
            raise RevisionNotFound(text, "a run is named by its experiment id (or a prefix)")
        found = self.runs.with_prefix(low) if self.runs else []
        if len(low) == 20 and not found and self.refs.read(run_ref(low)) is not None:
            found = [low]  # a run line whose record is not here (yet)
        if len(found) > 1:
            raise AmbiguousRevision(text, found, "experiment id")
        if not found:
            raise RevisionNotFound(text, "no experiment has this id")
        return found[0]

    # -- HEAD, branches, tags -------------------------------------------------------------------

    def checkout(self, rev: str) -> WeightCommit:
        """Attach HEAD to a branch, or detach it at any other revision."""
        with self._lock():
            old = self.refs.read(b"HEAD")
            ref = b"refs/heads/" + rev.encode("utf-8")
            if rev not in ("HEAD", "@") and _valid_ref_name(rev) and self.refs.read(ref):
                commit = self.resolve(rev)
                swap(self.refs, b"HEAD", old, b"ref: " + ref)
            else:
                commit = self.resolve(rev)
                swap(self.refs, b"HEAD", old, commit.encode("ascii"))
        return read_commit(self.git, commit)

    def create_branch(self, name: str, rev: str | None = None, force: bool = False) -> BranchInfo:
        check_ref_name(name, "branch")
        commit = self.resolve(rev or "HEAD").encode()
        ref = f"refs/heads/{name}".encode()
        with self._lock():
            old = self.refs.read(ref)
            if old is not None and not force:
                raise InvalidName("branch", name, "it exists already; pick another name or force")
            swap(self.refs, ref, old, commit)
        return BranchInfo(name, commit.decode(), self.current_branch() == name)

    def branches(self, remote: bool = False) -> list[BranchInfo]:
        current = None if remote else self.current_branch()
        space = b"refs/remotes/" if remote else b"refs/heads/"
        out = []
        for ref, value in sorted(self.refs.names(space).items()):
            name = ref[len(space) :].decode("utf-8")
            out.append(BranchInfo(name, value.decode("ascii"), name == current))
        return out

    def tag(self, name: str, rev: str | None, message: str | None, author: str) -> TagInfo:
        from dulwich.objects import Tag

        check_ref_name(name, "tag")
        commit = self.resolve(rev or "HEAD")
        ref = f"refs/tags/{name}".encode()
        target = commit.encode()
        if message:
            tag = Tag()
            tag.tagger = author.encode("utf-8")
            tag.message = message.encode("utf-8") + b"\n"
            tag.name = name.encode("utf-8")
            tag.object = (self.git.object_store[target].__class__, target)
            tag.tag_time = int(time.time())
            tag.tag_timezone = 0
            self.git.object_store.add_object(tag)
            target = tag.id
        with self._lock():
            if self.refs.read(ref) is not None:
                raise InvalidName("tag", name, "it exists already; tags do not move")
            swap(self.refs, ref, None, target)
        return TagInfo(name, commit, message)

    def tags(self) -> list[TagInfo]:
        from dulwich.objects import Tag

        out = []
        for ref, sha in sorted(self.refs.names(b"refs/tags/").items()):
            obj = self.git.object_store[sha]
            message = obj.message.decode("utf-8").strip() if isinstance(obj, Tag) else None
            name = ref[len(b"refs/tags/") :].decode("utf-8")
            out.append(TagInfo(name, self.peel(sha), message))
        return out

    def log(self, rev: str | None, limit: int | None, run: str | None = None) -> list[WeightCommit]:
        """Commits reachable from ``rev`` (default HEAD), newest first; with ``run``, the
        commits of that run's line only (from its head back to where it started)."""
        if run is not None:
            run = self.run_id(run)
            start = self.refs.resolve_ref(run_ref(run))
            if start is None:
                raise RevisionNotFound(run, f"run {run} has no weight commits")
            out: list[WeightCommit] = []
            for c in iter_history(self.git, start.decode("ascii")):
                if c.experiment_id != run or (limit is not None and len(out) >= limit):
                    break
                out.append(c)
            return out
        return list(iter_history(self.git, self.resolve(rev or "HEAD"), limit))

    def run_lines(self) -> dict[str, str]:
        """experiment id -> the head commit of that run's line (``refs/runs/<id>``)."""
        space = b"refs/runs/"
        return {
            ref[len(space) :].decode(): value.decode()
            for ref, value in self.refs.names(space).items()
        }

    def root_refs(self) -> list[str]:
        """The commits refs hold (branches, tags, run lines, fetched branches) and HEAD."""
        roots: set[str] = set()
        for _ref, sha in self.refs.names(b"refs/").items():
            try:
                roots.add(self.peel(sha))
            except RevisionNotFound:
                continue
        head = self.head()
        if head:
            roots.add(head)
        return sorted(roots)


def _valid_ref_name(name: str) -> bool:
    """True if ``name`` may be looked up as a ref: a user's string never reaches a path
    outside ``refs/`` (no ``..``, no leading ``/``, no control characters)."""
    try:
        check_ref_name(name.removeprefix("refs/"))
    except InvalidName:
        return False
    return True


def _count_steps(suffix: str) -> int:
    steps = 0
    for part in re.findall(r"~\d*|\^", suffix):
        steps += int(part[1:] or 1) if part.startswith("~") else 1
    return steps


_SHA_TEXT = re.compile(r"[0-9a-f]{40}")


def peek_ref(store: Path, ref: str = "HEAD") -> str | None:
    """The commit id ``ref`` holds in the store folder, read from the files alone (no
    dulwich import, plain system calls: every run calls this as it starts). Follows a
    symbolic HEAD; packed refs too."""
    folder = os.fspath(store)
    name = ref
    for _ in range(5):
        raw = _read_ref_file(os.path.join(folder, name))
        try:
            text = raw.decode("ascii").strip() if raw is not None else None
        except UnicodeDecodeError:
            text = None
        if text is None:
            text = _packed_ref(folder, name) or ""
        if text.startswith("ref: "):
            name = text[5:].strip()
            if not name.startswith("refs/") or ".." in name:
                return None
            continue
        return text if _SHA_TEXT.fullmatch(text) else None
    return None


def _read_ref_file(path: str) -> bytes | None:
    """The bytes of a ref file (or of packed-refs), None if there is none: plain system
    calls, a few microseconds for a ref of one line."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        parts = []
        while chunk := os.read(fd, 65536):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def _packed_ref(folder: str, name: str) -> str | None:
    raw = _read_ref_file(os.path.join(folder, "packed-refs"))
    try:
        lines = raw.decode("utf-8").splitlines() if raw is not None else []
    except UnicodeDecodeError:
        return None
    for line in lines:
        sha, _, ref = line.partition(" ")
        if ref == name:
            return sha
    return None
