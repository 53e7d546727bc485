"""The user's code: the git work tree a run starts in, its HEAD, branch and dirty flag, and a
snapshot of a dirty tree stored in ``.coralx`` so the exact code that ran can be restored.

The state of the work tree is read in process (:mod:`coralx.worktree`: no ``git`` process per
run, and the last answer kept while the tree does not change); GitPython is used only where
that reader cannot read the repository's layout, and for ``ancestors`` and restoring a clean
run's commit. Every failure to read git (no work tree, no ``git`` program, a repository
without commits) gives empty fields, never an error: tracking a run must not depend on git.

A snapshot is the working tree as it is (tracked files, and untracked files that are not
ignored; files over ``MAX_FILE`` bytes or beyond ``MAX_TOTAL`` in all are skipped and listed)
stored as a git tree in the store's object database, so identical files across runs are stored
once, and an unchanged tree is written once per store. ``restore`` writes it (or, for a clean
tree, the commit itself) into a new folder.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import CoralxError, InvalidValue, RevisionNotFound

__all__ = [
    "MAX_FILE",
    "MAX_TOTAL",
    "ancestors",
    "capture",
    "find_work_tree",
    "restore",
]

MAX_FILE = 5 * 1024 * 1024
MAX_TOTAL = 64 * 1024 * 1024
_SYMLINK = 0o120000
_EXEC = 0o100755
_FILE = 0o100644
_DIR = 0o040000


_work_trees: dict[str, Path | None] = {}


def find_work_tree(*starts: Path) -> Path | None:
    """The top of the first git work tree containing one of ``starts``. Remembered per
    folder for the life of the process: runs start often, work trees rarely move."""
    for start in starts:
        key = os.fspath(start)
        if key not in _work_trees:
            _work_trees[key] = _find_work_tree(Path(start).resolve())
        found = _work_trees[key]
        if found is not None and (found / ".git").exists():
            return found
    return None


def _find_work_tree(here: Path) -> Path | None:
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return None


def _open_git(root: Path) -> Any:
    """A GitPython Repo, or None when git cannot be used here."""
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    try:
        import git

        return git.Repo(root)
    except Exception:  # no git program, not a repository, unreadable: no code info
        return None


def capture(store_git: Any, *starts: Path, snapshot: bool = True) -> dict[str, Any]:
    """Code info for a run started in ``starts``: ``commit``, ``branch``, ``dirty``,
    ``snapshot`` (a tree id in ``store_git``, when dirty), ``root``, ``skipped``.

    Read in process (:mod:`coralx.worktree`), and answered from what was seen last while the
    tree has not changed; where that fails, asked of git (GitPython)."""
    empty: dict[str, Any] = {"commit": None, "branch": None, "dirty": None, "snapshot": None}
    root = find_work_tree(*starts)
    if root is None:
        return empty
    try:
        from .worktree import work_tree

        state = work_tree(root).state()
    except Exception:  # an index or ref layout we do not read: ask git
        return _capture_with_git(root, store_git, snapshot, empty)
    info = dict(empty, root=str(root), commit=state.commit, branch=state.branch)
    info["dirty"] = state.dirty
    if state.dirty and snapshot and store_git is not None:
        try:
            info["snapshot"], info["skipped"] = _stored_snapshot(root, state, store_git)
        except Exception as exc:  # keep what we know, say what failed
            info["skipped"] = [f"(snapshot failed: {exc})"]
    return info


# (work tree, store) -> (generation of the tree state, snapshot tree id, skipped files, the
# file found holding the tree: its loose object or its pack, or None until looked up)
_snapshots: dict[tuple[str, str], tuple[int, str, list[str], str | None]] = {}


def _stored_snapshot(root: Path, state: Any, store_git: Any) -> tuple[str, list[str]]:
    """The snapshot of ``state`` in ``store_git``: written once per version of the tree and
    store; between runs of an unchanged tree, the tree id found before."""
    key = (str(root), str(store_git.path))
    known = _snapshots.get(key)
    if known is not None and known[0] == state.generation:
        generation, tree, skipped, held_in = known
        if held_in is not None and os.path.exists(held_in):
            return tree, list(skipped)
        found, held_in = _find_tree(store_git, tree)
        if found:
            _snapshots[key] = (generation, tree, skipped, held_in)
            return tree, list(skipped)
    tree, skipped = _write_snapshot(root, state, store_git)
    _snapshots[key] = (state.generation, tree, skipped, None)
    return tree, list(skipped)


def _find_tree(store_git: Any, tree: str) -> tuple[bool, str | None]:
    """Whether the store holds the snapshot found before (it may have been deleted and made
    again at the same path), and the file that holds it: its loose object, or the pack it is
    in. Both are named by their content, so while that file is there the store holds the
    tree, and the next run checks that with one ``stat`` instead of reading pack indexes."""
    objects = store_git.object_store
    loose = os.path.join(objects.path, tree[:2], tree[2:])
    if os.path.exists(loose):
        return True, loose
    oid = tree.encode("ascii")
    try:
        for pack in objects.packs:
            if oid in pack:
                # dulwich's name for the pack's data file; without it, look up every time
                data = getattr(pack, "_data_path", None)
                return True, data if isinstance(data, str) else None
        return oid in objects, None
    finally:
        objects.close()  # packs reopen when next needed; none is left open behind us


def _write_snapshot(root: Path, state: Any, store_git: Any) -> tuple[str, list[str]]:
    """Store the files of ``state`` not in the store yet and the trees over them. The first
    snapshot of a large tree adds thousands of objects: written as one pack file (one file
    instead of thousands); a later one adds the few files that changed, as loose objects."""
    objects = store_git.object_store
    try:
        return _write_objects(root, state, objects, store_git)
    finally:
        # Pack files opened to look objects up (or written) are closed again: they reopen
        # when next needed, and an open pack left to the garbage collector warns.
        objects.close()


def _write_objects(root: Path, state: Any, objects: Any, store_git: Any) -> tuple[str, list[str]]:
    from dulwich.objects import Blob

    from .worktree import read_content

    stored = _Lookup(objects)
    files: dict[str, tuple[int, bytes]] = {}
    new: dict[bytes, Any] = {}
    skipped: list[str] = []
    total = 0
    for rel in sorted(state.files):
        mode, sha = state.files[rel]
        size = state.sizes[rel]
        if mode != _SYMLINK and (size > MAX_FILE or total + size > MAX_TOTAL):
            skipped.append(rel)
            continue
        blob_id = sha.encode("ascii")
        if blob_id not in new and blob_id not in stored:  # read only what the store lacks
            path = os.path.join(root, rel)
            try:
                data = read_content(path, os.lstat(path))
            except OSError:
                continue  # deleted since the look
            blob = Blob.from_string(data)
            blob_id = blob.id
            new[blob_id] = blob
            size = len(data)
        total += size
        files[rel] = (mode, blob_id)
    tree = _build_trees(files, new)
    from .graph import write_objects  # here: graph imports numpy, start() must not

    write_objects(objects, [obj for oid, obj in new.items() if oid not in stored])
    return tree, skipped


class _Lookup:
    """``id in store`` for many ids at once: a loose object is one ``stat``, a packed one a
    lookup in pack indexes listed once (dulwich's own test reads each loose object)."""

    def __init__(self, objects: Any) -> None:
        self._root = objects.path
        self._packs = list(objects.packs)

    def __contains__(self, oid: bytes) -> bool:
        hexid = oid.decode("ascii")
        if os.path.exists(os.path.join(self._root, hexid[:2], hexid[2:])):
            return True
        return any(oid in pack for pack in self._packs)


def _build_trees(files: dict[str, tuple[int, bytes]], out: dict[bytes, Any]) -> str:
    """The git trees over ``files`` (path -> (mode, blob id)), added to ``out``; the root's
    id."""
    from dulwich.objects import Tree

    nested: dict[str, Any] = {}
    for rel, entry in files.items():
        *dirs, name = rel.split("/")
        node = nested
        for d in dirs:
            node = node.setdefault(d, {})
        node[name] = entry

    def build(node: dict[str, Any]) -> Any:
        tree = Tree()
        for name, value in node.items():
            if isinstance(value, dict):
                tree.add(name.encode("utf-8", "surrogateescape"), _DIR, build(value))
            else:
                tree.add(name.encode("utf-8", "surrogateescape"), value[0], value[1])
        out[tree.id] = tree
        return tree.id

    return str(build(nested).decode("ascii"))


def _capture_with_git(
    root: Path, store_git: Any, snapshot: bool, empty: dict[str, Any]
) -> dict[str, Any]:
    repo = _open_git(root)
    if repo is None:
        return empty
    info = dict(empty, root=str(root))
    try:
        info["commit"] = repo.head.commit.hexsha
    except Exception:  # no commits yet
        info["commit"] = None
    try:
        info["branch"] = None if repo.head.is_detached else repo.active_branch.name
    except Exception:
        info["branch"] = None
    try:
        info["dirty"] = bool(repo.is_dirty(untracked_files=True))
        if info["dirty"] and snapshot and store_git is not None:
            info["snapshot"], info["skipped"] = _snapshot(repo, root, store_git)
    except Exception as exc:  # git failed mid-way: keep what we know, say what failed
        info["skipped"] = [f"(snapshot failed: {exc})"]
    finally:
        repo.close()
    return info


def _listed_files(repo: Any) -> list[str]:
    out = repo.git.ls_files("-z", "--cached", "--others", "--exclude-standard")
    return sorted({p for p in out.split("\0") if p})


def _snapshot(repo: Any, root: Path, store_git: Any) -> tuple[str, list[str]]:
    from dulwich.objects import Blob

    files: dict[str, tuple[int, bytes]] = {}
    skipped: list[str] = []
    total = 0
    for rel in _listed_files(repo):
        path = root / rel
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue  # tracked but deleted in the working tree
        if stat.S_ISLNK(st.st_mode):
            mode, data = _SYMLINK, os.readlink(path).encode("utf-8", "surrogateescape")
        elif stat.S_ISREG(st.st_mode):
            if st.st_size > MAX_FILE or total + st.st_size > MAX_TOTAL:
                skipped.append(rel)
                continue
            mode = _EXEC if st.st_mode & 0o111 else _FILE
            data = path.read_bytes()
        else:
            continue  # submodules (folders) and special files
        total += len(data)
        blob = Blob.from_string(data)
        store_git.object_store.add_object(blob)
        files[rel] = (mode, blob.id)
    return _write_trees(files, store_git), skipped


def _write_trees(files: dict[str, tuple[int, bytes]], store_git: Any) -> str:
    trees: dict[bytes, Any] = {}
    root = _build_trees(files, trees)
    for tree in trees.values():  # children before their parents
        store_git.object_store.add_object(tree)
    return root


def ancestors(rev: str, *starts: Path) -> set[str]:
    """The commit ``rev`` resolves to in the user's repository, and all its ancestors."""
    root = find_work_tree(*starts)
    repo = _open_git(root) if root is not None else None
    if repo is None:
        raise RevisionNotFound(rev, "no git work tree here to look it up in")
    try:
        out = repo.git.rev_list(rev, "--")
    except Exception:
        raise RevisionNotFound(
            rev, "it is not a commit, branch or tag of your git repository"
        ) from None
    finally:
        repo.close()
    return set(out.split())


# -- restoring ----------------------------------------------------------------------------------


def _check_target(into: Path) -> None:
    if into.exists() and (not into.is_dir() or any(into.iterdir())):
        raise InvalidValue(f"{into} exists and is not an empty folder; pick a new folder")
    into.mkdir(parents=True, exist_ok=True)


def _safe_name(raw: bytes) -> str:
    name = raw.decode("utf-8", "surrogateescape")
    if not name or name in (".", "..", ".git") or "/" in name or "\0" in name:
        raise CoralxError(f"refusing to restore a file named {name!r}: the snapshot is damaged")
    return name


def _entries(store_git: Any, tree_id: bytes, prefix: Path) -> Iterator[tuple[Path, int, bytes]]:
    tree = store_git[tree_id]
    for entry in tree.iteritems():
        path = prefix / _safe_name(entry.path)
        if entry.mode == _DIR:
            yield path, _DIR, b""
            yield from _entries(store_git, entry.sha, path)
        else:
            yield path, entry.mode, store_git[entry.sha].as_raw_string()


def _write_files(into: Path, entries: Iterable[tuple[Path, int, bytes]]) -> int:
    count = 0
    for rel, mode, data in entries:
        dest = into / rel
        if dest.parent.is_symlink():
            raise CoralxError(f"refusing to write through the symbolic link {dest.parent}")
        if mode == _DIR:
            dest.mkdir()
        elif mode == _SYMLINK:
            os.symlink(data.decode("utf-8", "surrogateescape"), dest)
            count += 1
        elif mode in (_FILE, _EXEC):
            dest.write_bytes(data)
            if mode == _EXEC:
                dest.chmod(0o755)
            count += 1
    return count


def restore(code: dict[str, Any], store_git: Any, into: Path) -> dict[str, Any]:
    """Write the code of a run into the new or empty folder ``into``: its snapshot when the
    tree was dirty, else its commit, read from the user's repository."""
    into = Path(into)
    if code.get("snapshot"):
        _check_target(into)
        try:
            count = _write_files(into, _entries(store_git, code["snapshot"].encode(), Path()))
        finally:
            store_git.object_store.close()  # packs read from reopen when next needed
        return {"source": "snapshot", "tree": code["snapshot"], "files": count}
    commit = code.get("commit")
    if not commit:
        raise RevisionNotFound("(none)", "this run recorded no git commit: it ran outside git")
    root = code.get("root")
    repo = _open_git(Path(root)) if root else None
    if repo is None:
        raise RevisionNotFound(commit, f"the git repository {root} it ran in cannot be opened")
    try:
        try:
            tree = repo.commit(commit).tree
        except Exception:
            raise RevisionNotFound(commit, f"{root} no longer has this commit") from None
        _check_target(into)
        entries = []
        for item in tree.traverse():
            rel = Path(item.path)
            if item.type == "tree":
                entries.append((rel, _DIR, b""))
            elif item.type == "blob":
                entries.append((rel, item.mode, item.data_stream.read()))
        count = _write_files(into, entries)
    finally:
        repo.close()
    return {"source": "commit", "commit": commit, "files": count}
