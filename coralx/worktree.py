"""The state of a git work tree, read in process and kept while the tree does not change.

``tracker.start`` asks for the user's HEAD, branch, dirty flag and the files of a dirty tree at
every run; asking ``git`` costs a process per run and, for a dirty tree, re-reading every file.
This module reads ``HEAD``, the refs and the index file itself (dulwich parses the index) and
decides which files changed the way git does: a file whose stat data (mtime, ctime, size,
inode, mode) matches its index entry, and whose mtime is older than the index file, is
unchanged; any other file is hashed and compared. A file whose mtime is not older than the
moment we read it is "racy" (it may change again within the same timestamp) and is hashed again
at the next look. Hashes of files outside the index are kept by stat data too, so between two
runs nothing unchanged is read twice.

On Linux an inotify watch on every directory walked tells whether anything in the tree moved
since the last look: when nothing did, and ``HEAD``, the ref and the index file have the same
stat data, the previous answer is returned without walking the tree (a few ``stat`` calls).
Anywhere else, or when the watches cannot be set up, each look walks the tree and compares
stat data (no file is re-read unless it changed).

Not handled as git would: clean/smudge filters and ``core.autocrlf`` (a file is compared by
its bytes), and changes made through a shared memory map (inotify does not see them).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import hashlib
import os
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TreeState", "WorkTree", "work_tree"]

_SYMLINK = 0o120000
_EXEC = 0o100755
_FILE = 0o100644
_GITLINK = 0o160000
_TREE = 0o040000
_ASSUME_VALID = 0x8000
_SKIP_WORKTREE = 0x4000
# A file modified less than this before we read it may change again with the same stat data
# (coarse file system clocks; one-second granularity on some file systems): hash it again.
RACY_NS = 2_000_000_000

StatKey = tuple[int, int, int, int, int]


@dataclass
class TreeState:
    """One look at a work tree: HEAD, branch, dirty flag and, for every file a snapshot
    would hold (tracked and present, or untracked and not ignored), its (mode, blob id)."""

    commit: str | None
    branch: str | None
    dirty: bool
    files: dict[str, tuple[int, str]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    generation: int = 0


def _ns(value: Any) -> int:
    if isinstance(value, tuple):
        return int(value[0]) * 1_000_000_000 + int(value[1])
    if isinstance(value, float):
        return int(value * 1_000_000_000)
    return int(value) * 1_000_000_000


def _same_time(ns: int, stored: int) -> bool:
    """A file time against an index time: to the nanosecond when the index has them (git
    built with nanosecond support), else to the second."""
    if stored % 1_000_000_000:
        return ns == stored
    return ns // 1_000_000_000 == stored // 1_000_000_000


def _stat_key(st: os.stat_result) -> StatKey:
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_mode)


def _git_mode(st: os.stat_result) -> int:
    if stat.S_ISLNK(st.st_mode):
        return _SYMLINK
    return _EXEC if st.st_mode & 0o111 else _FILE


def _blob_id(data: bytes) -> str:
    h = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    h.update(data)
    return h.hexdigest()


def read_content(path: str, st: os.stat_result) -> bytes:
    """The bytes git stores for a file: its content, or a symbolic link's target."""
    if stat.S_ISLNK(st.st_mode):
        return os.readlink(path).encode("utf-8", "surrogateescape")
    with open(path, "rb") as f:
        return f.read()


def _git_dirs(root: Path) -> tuple[Path, Path] | None:
    """(git dir, common dir) of the work tree at ``root``: they differ for ``git worktree``."""
    dot_git = root / ".git"
    if dot_git.is_dir():
        return dot_git, dot_git
    if not dot_git.is_file():
        return None
    text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
    if not text.startswith("gitdir:"):
        return None
    git_dir = (root / text[len("gitdir:") :].strip()).resolve()
    common = git_dir / "commondir"
    if common.is_file():
        return git_dir, (git_dir / common.read_text(encoding="utf-8").strip()).resolve()
    return git_dir, git_dir


def _stat_or_none(path: str) -> StatKey | None:
    try:
        return _stat_key(os.stat(path))
    except OSError:
        return None


class _Watch:
    """inotify watches on the folders of a work tree (Linux): ``changed()`` says whether any
    event arrived since the last call. Any failure disables it (the caller then walks)."""

    MASK = 0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800 | 0x01000000
    NONBLOCK_CLOEXEC = 0o4000 | 0o2000000

    def __init__(self) -> None:
        import ctypes

        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(self.NONBLOCK_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.fd = fd
        self.pid = os.getpid()
        self.watched: set[str] = set()

    def add(self, folder: str) -> None:
        if folder in self.watched:
            return
        if self._libc.inotify_add_watch(self.fd, os.fsencode(folder), self.MASK) < 0:
            raise OSError("inotify_add_watch failed (too many watches?)")
        self.watched.add(folder)

    def changed(self) -> bool:
        """True if anything happened in a watched folder since the last call (events read)."""
        seen = False
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return seen
            if not data:
                return seen
            seen = True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _new_watch() -> _Watch | None:
    if not sys.platform.startswith("linux") or os.environ.get("CORALX_NO_INOTIFY"):
        return None
    try:
        return _Watch()
    except Exception:  # no inotify here: walk the tree at every look instead
        return None


class WorkTree:
    """A git work tree, and what was last seen of it."""

    def __init__(self, root: Path) -> None:
        dirs = _git_dirs(root)
        if dirs is None:
            raise FileNotFoundError(f"{root} is not a git work tree")
        if (dirs[1] / "reftable").is_dir():
            raise NotImplementedError("reftable refs: read through git")
        self.root = root
        self._root_s = str(root)
        self.git_dir, self.common_dir = dirs
        self._head_path = os.path.join(self.git_dir, "HEAD")
        self._packed_path = os.path.join(self.common_dir, "packed-refs")
        self._head_st: StatKey | None = None
        self._ref: str | None = None
        self._head_key: tuple[Any, ...] | None = None
        self._head: tuple[str | None, str | None] = (None, None)
        self._index_key: StatKey | None = None
        self._entries: dict[str, Any] = {}
        self._conflicted = False
        self._index_mtime = 0
        self._index_tree: str | None = None
        self._head_trees: dict[str, str | None] = {}
        self._hashes: dict[str, tuple[StatKey, str]] = {}
        self._state: TreeState | None = None
        self._generation = 0
        self._watch: _Watch | None = None
        self._watch_tried = False
        self._ignore: Any = None
        self._dulwich: Any = None

    # -- HEAD ---------------------------------------------------------------------------------

    def read_head(self) -> tuple[str | None, str | None]:
        """(commit, branch) of HEAD; branch None when detached, commit None before the
        first commit. Re-read only when HEAD, the branch's ref or packed-refs moved (git
        rewrites each by rename, so a new version has a new inode)."""
        head_st = _stat_or_none(self._head_path)
        if head_st != self._head_st:
            self._ref = self._ref_path()  # stat taken first: a later change shows next time
            self._head_st = head_st
        key = (head_st, _stat_or_none(self._packed_path), self._ref and _stat_or_none(self._ref))
        if key != self._head_key:
            self._head_key = key
            self._head = self._resolve_head()
        return self._head

    def _ref_path(self) -> str | None:
        try:
            with open(self._head_path, encoding="utf-8") as f:
                text = f.read().strip()
        except OSError:
            return None
        if not text.startswith("ref: "):
            return None
        return os.path.join(self.common_dir, text[5:])

    def _resolve_head(self) -> tuple[str | None, str | None]:
        try:
            text = (self.git_dir / "HEAD").read_text(encoding="utf-8").strip()
        except OSError:
            return None, None
        if not text.startswith("ref: "):
            return (text if len(text) == 40 else None), None
        ref = text[5:]
        branch = ref[len("refs/heads/") :] if ref.startswith("refs/heads/") else None
        return self._resolve_ref(ref, depth=0), branch

    def _resolve_ref(self, ref: str, depth: int) -> str | None:
        if depth > 5:
            return None
        for folder in (self.git_dir, self.common_dir):
            try:
                text = (folder / ref).read_text(encoding="utf-8").strip()
            except OSError:
                continue
            if text.startswith("ref: "):
                return self._resolve_ref(text[5:], depth + 1)
            return text if len(text) == 40 else None
        try:
            packed = (self.common_dir / "packed-refs").read_text(encoding="utf-8")
        except OSError:
            return None
        for line in packed.splitlines():
            sha, _, name = line.partition(" ")
            if name == ref and len(sha) == 40:
                return sha
        return None

    # -- the index ----------------------------------------------------------------------------

    def _read_index(self) -> bool:
        """Re-read the index file if its stat data moved; True if it did."""
        path = os.path.join(self.git_dir, "index")
        key = _stat_or_none(path)
        if key == self._index_key:
            return False
        if glob.glob(os.path.join(glob.escape(str(self.git_dir)), "sharedindex.*")):
            # A split index keeps entries in a second file this reader does not merge.
            raise NotImplementedError("split index: read through git")
        from dulwich.index import ConflictedIndexEntry, Index

        entries: dict[str, Any] = {}
        conflicted = False
        if key is not None:
            index = Index(path)
            for name, entry in index.items():
                rel = name.decode("utf-8", "surrogateescape")
                if isinstance(entry, ConflictedIndexEntry):
                    conflicted = True
                    continue
                entries[rel] = entry
        self._entries, self._conflicted = entries, conflicted
        self._index_key = key
        self._index_mtime = key[0] if key is not None else 0
        self._index_tree = None
        return True

    def _tree_of_index(self) -> str:
        if self._index_tree is None:
            from dulwich.index import commit_tree
            from dulwich.object_store import MemoryObjectStore

            blobs = [
                (rel.encode("utf-8", "surrogateescape"), e.sha, e.mode)
                for rel, e in self._entries.items()
            ]
            tree = commit_tree(MemoryObjectStore(), blobs)
            self._index_tree = tree.decode("ascii")
        return self._index_tree

    def _tree_of_commit(self, commit: str) -> str | None:
        if commit not in self._head_trees:
            self._head_trees[commit] = self._read_commit_tree(commit)
        return self._head_trees[commit]

    def _read_commit_tree(self, commit: str) -> str | None:
        from dulwich.repo import Repo

        for attempt in range(2):
            if self._dulwich is None or attempt:
                if self._dulwich is not None:
                    self._dulwich.close()
                self._dulwich = Repo(self._root_s)
            try:
                return str(self._dulwich[commit.encode("ascii")].tree.decode("ascii"))
            except KeyError:
                continue  # a pack written since the repository was opened
        return None

    # -- the files ----------------------------------------------------------------------------

    def _ignores(self) -> Any:
        if self._ignore is None:
            from dulwich.ignore import IgnoreFilter, IgnoreFilterManager

            if self._dulwich is None:
                from dulwich.repo import Repo

                self._dulwich = Repo(self._root_s)
            manager = IgnoreFilterManager.from_repo(self._dulwich)
            shared = self.common_dir / "info" / "exclude"
            if self.common_dir != self.git_dir and shared.is_file():
                manager._global_filters.append(IgnoreFilter.from_path(str(shared)))
            self._ignore = manager
        return self._ignore

    def _walk(self, watch: _Watch | None) -> tuple[dict[str, os.DirEntry[str]], set[str]]:
        """Every file under the root in a folder that is not ignored (nor .git, .coralx or
        a nested repository): rel path -> DirEntry; and the folders walked."""
        ignores = self._ignores()
        files: dict[str, os.DirEntry[str]] = {}
        folders: set[str] = set()
        stack = [("", self._root_s)]
        while stack:
            rel_dir, folder = stack.pop()
            if watch is not None:
                watch.add(folder)  # before reading it: a change from now on is an event
            folders.add(rel_dir)
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if entry.name == ".git":
                    continue  # the repository (a folder, or a file for `git worktree`)
                rel = f"{rel_dir}{entry.name}"
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir:
                    if entry.name == ".coralx" or os.path.lexists(os.path.join(entry.path, ".git")):
                        continue
                    if ignores.is_ignored(rel + "/") and ignores.may_prune_directory(rel + "/"):
                        continue
                    stack.append((rel + "/", entry.path))
                else:
                    files[rel] = entry
        return files, folders

    def _hash(self, rel: str, path: str, st: os.stat_result, now: int) -> str:
        key = _stat_key(st)
        cached = self._hashes.get(rel)
        if cached is not None and cached[0] == key and st.st_mtime_ns < now - RACY_NS:
            return cached[1]
        sha = _blob_id(read_content(path, st))
        self._hashes[rel] = (key, sha)
        return sha

    def _clean_by_stat(self, entry: Any, st: os.stat_result) -> bool:
        """Whether git would take the file for unchanged from its index entry alone."""
        if entry.flags & _ASSUME_VALID:
            return True  # `git update-index --assume-unchanged`: git does not look either
        mtime = _ns(entry.mtime)
        if mtime >= self._index_mtime:
            return False  # racily clean: written in the same tick as the index
        return (
            _same_time(st.st_mtime_ns, mtime)
            and _same_time(st.st_ctime_ns, _ns(entry.ctime))
            and st.st_size == entry.size
            and st.st_ino == entry.ino
            and _git_mode(st) == entry.mode
        )

    def _scan(self, commit: str | None, branch: str | None) -> TreeState:
        watch = self._watcher()
        if watch is not None:
            watch.changed()  # events so far are what this scan reads anyway
        now = time.time_ns()
        walked, folders = self._walk(watch)
        if watch is not None:
            for rel in self._entries:  # tracked files in ignored folders: watch them too
                parent = rel.rpartition("/")[0]
                if parent and parent + "/" not in folders:
                    with contextlib.suppress(OSError):
                        watch.add(os.path.join(self._root_s, parent))
        files: dict[str, tuple[int, str]] = {}
        sizes: dict[str, int] = {}
        dirty = self._conflicted
        for rel, entry in self._entries.items():
            if entry.mode == _GITLINK or entry.mode == _TREE:
                continue  # a submodule (its own repository), a sparse index's folder
            dir_entry = walked.pop(rel, None)
            if entry.extended_flags & _SKIP_WORKTREE:
                continue  # outside a sparse checkout: not in the work tree, and not changed
            path = os.path.join(self._root_s, rel)
            try:
                st = dir_entry.stat(follow_symlinks=False) if dir_entry else os.lstat(path)
            except OSError:
                dirty = True  # tracked, deleted in the work tree
                continue
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                dirty = True
                continue
            sha = entry.sha.decode("ascii")
            mode = _git_mode(st)
            if not self._clean_by_stat(entry, st):
                found = self._hash(rel, path, st, now)
                if found != sha or mode != entry.mode:
                    dirty = True
                sha = found
            files[rel] = (mode, sha)
            sizes[rel] = st.st_size
        ignores = self._ignores()
        for rel, dir_entry in walked.items():
            try:
                st = dir_entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                continue
            if ignores.is_ignored(rel):
                continue
            dirty = True  # untracked and not ignored
            files[rel] = (_git_mode(st), self._hash(rel, dir_entry.path, st, now))
            sizes[rel] = st.st_size
        if not dirty:
            head_tree = self._tree_of_commit(commit) if commit else None
            dirty = (head_tree != self._tree_of_index()) if head_tree else bool(self._entries)
        for gone in set(self._hashes) - set(files):
            del self._hashes[gone]
        previous = self._state
        if previous is None or previous.files != files or previous.dirty != dirty:
            self._generation += 1
        return TreeState(commit, branch, dirty, files, sizes, self._generation)

    def _watcher(self) -> _Watch | None:
        if self._watch is not None and self._watch.pid != os.getpid():
            self._watch = None  # a forked child: the parent's watches are not ours to read
            self._watch_tried = False
        if not self._watch_tried:
            self._watch_tried = True
            self._watch = _new_watch()
        return self._watch

    def state(self) -> TreeState:
        """HEAD, branch, dirty flag and files now; the last answer when nothing moved."""
        commit, branch = self.read_head()
        index_moved = self._read_index()
        state = self._state
        watch = self._watch
        if (
            state is not None
            and not index_moved
            and watch is not None
            and watch.pid == os.getpid()
            and (state.commit, state.branch) == (commit, branch)
            and not watch.changed()
        ):
            return state
        try:
            state = self._scan(commit, branch)
        except OSError:
            # A watch could not be added (the kernel's limit): walk at every look instead.
            if self._watch is not None:
                self._watch.close()
            self._watch, self._watch_tried = None, True
            state = self._scan(commit, branch)
        self._state = state
        return state

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if self._dulwich is not None:
            self._dulwich.close()
            self._dulwich = None


_trees: dict[str, WorkTree] = {}
MAX_TREES = 8  # work trees kept per process (each holds an inotify instance, a scarce resource)


def work_tree(root: Path) -> WorkTree:
    """The :class:`WorkTree` of ``root``, one per process and folder (the least recently
    used is closed beyond :data:`MAX_TREES`)."""
    key = os.fspath(root)
    tree = _trees.pop(key, None)
    if tree is None:
        tree = WorkTree(Path(root))
        while len(_trees) >= MAX_TREES:
            _trees.pop(next(iter(_trees))).close()
    _trees[key] = tree  # last in the dict: most recently used
    return tree


def _forget_after_fork() -> None:
    for tree in _trees.values():
        tree._watch = None  # the fd stays the parent's; the child sets up its own
        tree._watch_tried = False
        tree._state = None


os.register_at_fork(after_in_child=_forget_after_fork)


def _close_all() -> None:
    for tree in list(_trees.values()):
        with contextlib.suppress(Exception):
            tree.close()


# At exit, before the interpreter tears down what dulwich's finalisers need.
atexit.register(_close_all)
