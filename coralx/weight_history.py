"""The weight history of a repository: stage, commit, check out, compare, clean, check.

This joins the chunk store (:mod:`coralx.store`) and the commit graph (:mod:`coralx.graph`).
:class:`~coralx.repository.Repository` delegates its weight methods here; use those:

>>> repo.stage_weights({"layer.weight": w})
>>> commit = repo.commit("epoch 3")
>>> repo.get_all_weights(commit.commit_hash)["layer.weight"]
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _fs, graph
from .errors import (
    ChunkNotFound,
    InvalidValue,
    StoreCorrupted,
)
from .ids import check_ref_name, is_hex

if TYPE_CHECKING:
    import numpy as np

    from .repository import Repository
    from .store.base import ChunkStore
    from .store.manifest import Manifest
    from .store.reader import WeightReader
    from .store.weights import StagedTensor

__all__ = ["DuReport", "FsckReport", "GcReport", "TensorChange", "WeightDiff", "WeightHistory"]

STAGE_FILE = "STAGE.json"
PINS_DIR = "pins"
GC_LOCK = "gc.lock"
REFS_LOCK = "refs.lock"
DEFAULT_PRUNE_AGE = 3600.0


@dataclass
class TensorChange:
    """How one tensor differs between two commits."""

    name: str
    dtype: tuple[str, str]
    shape: tuple[list[int], list[int]]
    max_abs_change: float | None
    l2_change: float | None
    fraction_changed: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": list(self.dtype),
            "shape": [list(s) for s in self.shape],
            "max_abs_change": self.max_abs_change,
            "l2_change": self.l2_change,
            "fraction_changed": self.fraction_changed,
        }


@dataclass
class WeightDiff:
    """Tensors added, removed, changed and unchanged from ``rev_a`` to ``rev_b``."""

    rev_a: str
    rev_b: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[TensorChange] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rev_a": self.rev_a,
            "rev_b": self.rev_b,
            "added": self.added,
            "removed": self.removed,
            "changed": [c.to_dict() for c in self.changed],
            "unchanged": self.unchanged,
        }


@dataclass
class GcReport:
    reachable_commits: int
    kept_chunks: int
    removed_chunks: int
    freed_bytes: int
    removed_temp_files: int
    dry_run: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class FsckReport:
    """``damaged``: one entry per bad chunk, naming every (commit, tensor) that uses it."""

    checked_commits: int
    checked_chunks: int
    damaged: list[dict[str, Any]] = field(default_factory=list)
    damaged_files: list[dict[str, Any]] = field(default_factory=list)
    """Records, journals, blobs and sweeps that failed their check (``records.checks``)."""

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.damaged_files

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked_commits": self.checked_commits,
            "checked_chunks": self.checked_chunks,
            "damaged": self.damaged,
            "damaged_files": self.damaged_files,
        }


@dataclass
class DuReport:
    """Space used: ``logical`` is every commit's tensors counted in full; ``unique_raw``
    each distinct chunk once; ``stored`` the bytes of the stored chunks; ``disk`` the space
    the chunk files take on disk (allocated blocks, as ``du`` counts them: a small file takes
    a whole block)."""

    commits: int
    chunks: int
    logical_bytes: int
    unique_raw_bytes: int
    stored_bytes: int
    disk_bytes: int = 0
    files: int = 0

    @property
    def dedup_ratio(self) -> float:
        return self.logical_bytes / self.unique_raw_bytes if self.unique_raw_bytes else 1.0

    @property
    def compression_ratio(self) -> float:
        return self.unique_raw_bytes / self.stored_bytes if self.stored_bytes else 1.0

    @property
    def stored_fraction(self) -> float:
        return self.stored_bytes / self.logical_bytes if self.logical_bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "commits": self.commits,
            "chunks": self.chunks,
            "logical_bytes": self.logical_bytes,
            "unique_raw_bytes": self.unique_raw_bytes,
            "stored_bytes": self.stored_bytes,
            "disk_bytes": self.disk_bytes,
            "files": self.files,
            "dedup_ratio": self.dedup_ratio,
            "compression_ratio": self.compression_ratio,
            "stored_fraction": self.stored_fraction,
        }


class WeightHistory:
    """Weights of one repository: the chunk store, the staging area and the commit graph."""

    def __init__(self, repo: Repository, chunks: ChunkStore | None = None) -> None:
        from .store.disk import DiskChunkStore

        self.repo = repo
        # Everything below goes through the ChunkStore interface: another implementation
        # (an object store) plugs in here.
        self.chunks: ChunkStore = (
            chunks if chunks is not None else DiskChunkStore(repo.path / "chunks")
        )
        self.staged: dict[str, StagedTensor] = {}
        self.staged_torch: dict[str, Any] = {}
        self._manifests: dict[str, Manifest | None] = {}
        self._graph: graph.Graph | None = None
        self._temps_swept = False
        repo.git.object_store.fsync_object_files = True

    @property
    def git(self) -> Any:
        return self.repo.git

    def _lock(self, name: str, shared: bool = False) -> _fs.FileLock:
        return _fs.FileLock(self.repo.path / name, timeout=600, shared=shared)

    # -- staging and committing --------------------------------------------------------------

    def stage_weights(
        self,
        weights: Mapping[str, Any],
        progress: Callable[[int], None] | None = None,
        *,
        aliases: Mapping[str, str] | None = None,
        torch_layout: Mapping[str, Any] | None = None,
    ) -> list[str]:
        """Write the tensors' chunks now (a snapshot, as ``git add``) and stage them.

        ``aliases`` (name -> name staged here) stages more names for the same tensor, written
        once; ``torch_layout`` is the manifest's ``torch`` section for the next commit (both
        from :func:`coralx.store.torch_compat.module_tensors`).
        """
        names = self._stage_arrays(weights, progress)
        for alias, canonical in (aliases or {}).items():
            self.staged[alias] = self.staged[canonical]
        if torch_layout is not None:
            self.staged_torch = dict(torch_layout)
        return names + list(aliases or {})

    def _stage_arrays(
        self, weights: Mapping[str, Any], progress: Callable[[int], None] | None = None
    ) -> list[str]:
        from .store.weights import prepare, stage_tensors

        arrays = prepare(weights)  # every value checked before anything is written
        head = self._line_head()
        parent = self.manifest(head) if head else None
        with self._lock(GC_LOCK, shared=True):
            try:
                with self.chunks.batch():  # every chunk durable before a commit names it
                    bases = {n: parent.tensors.get(n) if parent else None for n in arrays}
                    self.staged.update(stage_tensors(self.chunks, arrays, bases, progress))
            finally:
                self._write_pin()  # before gc can run again, it knows these chunks are in use
        return list(arrays)

    # -- pins: the chunks a live process has staged, which gc must keep --------------------------

    @property
    def _pin_path(self) -> Path:
        from .identity import hostname

        if not hasattr(self, "_pin_name"):
            import secrets

            self._pin_name = f"{hostname()}-{os.getpid()}-{secrets.token_hex(4)}.json"
        return self.repo.path / PINS_DIR / self._pin_name

    def _write_pin(self) -> None:
        chunks = sorted({c for t in self.staged.values() for c in t.entry.chunks})
        path = self._pin_path
        if not chunks:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(exist_ok=True)
        from .identity import hostname

        doc = {"host": hostname(), "pid": os.getpid(), "chunks": chunks}
        _fs.atomic_write(path, json.dumps(doc), fsync=False)

    def _pinned_chunks(self) -> set[str]:
        """Chunks staged by live processes; pins of processes gone from this host are removed."""
        from .identity import hostname, pid_alive

        folder = self.repo.path / PINS_DIR
        pinned: set[str] = set()
        for path in folder.glob("*.json") if folder.is_dir() else []:
            doc = _read_json(path) or {}
            if doc.get("host") == hostname() and not pid_alive(int(doc.get("pid", 0))):
                path.unlink(missing_ok=True)
                continue
            pinned.update(c for c in doc.get("chunks", []) if isinstance(c, str))
        return pinned

    def add_file(
        self, path: str | os.PathLike[str], progress: Callable[[int], None] | None = None
    ) -> list[str]:
        """Stage every tensor of a ``.safetensors`` or ``.npz`` file (a safetensors file is
        mapped, not read into memory: it is read chunk by chunk as it is staged)."""
        return self.stage_weights(read_weights_file(path), progress)

    def commit(
        self,
        message: str,
        *,
        branch: str | None = None,
        links: dict[str, str | None],
    ) -> graph.WeightCommit:
        """Commit the staged tensors (see ``Repository.commit``)."""
        from .store.manifest import Manifest

        text = graph.full_message(message, links)
        staged, from_file = self._take_stage()
        manifest = Manifest(
            {name: t.entry for name, t in staged.items()}, self._torch_layout(staged)
        )
        ref, start = self._target(branch, links.get("experiment_id"))
        author = _author(self._work_tree(self.repo.commit_context))
        with self._lock(GC_LOCK, shared=True):
            self._check_chunks(manifest)
            if not self._temps_swept:
                # What a killed writer left, at this handle's first commit rather than at
                # gc's hour (a scan of every chunk folder: once, not at every commit).
                self.chunks.remove_dead_temp_files()
                self._temps_swept = True

            def build(old: bytes | None) -> bytes:
                parents = [old] if old else ([start.encode()] if start else [])
                cid, _tree = graph.make_commit(self.git, manifest, text, author, parents)
                return bytes(cid)

            new = self.commit_graph.commit_to(ref, build)
            self.staged = {}
            self.staged_torch = {}
            self._write_pin()
            if from_file:
                (self.repo.path / STAGE_FILE).unlink(missing_ok=True)
        return graph.read_commit(self.git, new)

    def _torch_layout(self, staged: dict[str, StagedTensor]) -> dict[str, Any]:
        """The staged ``torch`` section, without aliases whose names were staged again since."""
        layout = dict(self.staged_torch)
        aliases = {
            a: c
            for a, c in layout.get("aliases", {}).items()
            if a in staged and c in staged and staged[a].entry == staged[c].entry
        }
        if aliases:
            layout["aliases"] = aliases
        else:
            layout.pop("aliases", None)
        return layout

    def _take_stage(self) -> tuple[dict[str, StagedTensor], bool]:
        if self.staged:
            return dict(self.staged), False
        saved = self._load_stage_file()
        if saved:
            return saved, True
        raise InvalidValue(
            "nothing is staged: call repo.stage_weights({...}) or `coralx add FILE` first"
        )

    def _check_chunks(self, manifest: Manifest) -> None:
        for cid in manifest.chunk_ids():
            if not self.chunks.has(cid):
                raise ChunkNotFound(
                    cid, "staged, then removed by gc before the commit; stage again"
                )
            self.chunks.touch(cid)

    def _target(self, branch: str | None, run: str | None) -> tuple[bytes, str | None]:
        """Where a commit goes, and the parent it starts from if that ref is new.

        The rule: an explicit ``branch`` puts it on that branch; else a commit linked to a run
        goes on the run's own line ``refs/runs/<id>`` (its first commit's parent is the
        run's base: the head when the run started, or the resumed run's last commit); else
        it moves the branch HEAD is on (or a detached HEAD), as ``git commit`` does.
        """
        if branch is not None:
            return f"refs/heads/{check_ref_name(branch)}".encode(), self._head_commit()
        if run:
            return graph.run_ref(run), self._run_base(run)
        return b"HEAD", self._head_commit()

    def _run_base(self, run: str) -> str | None:
        ctx = self.repo.commit_context
        if ctx.get("experiment_id") == run and ctx.get("run_base"):
            return ctx["run_base"]
        return self._head_commit()

    def _line_head(self) -> str | None:
        """The commit the next commit will sit on: its run line's head inside a run, else
        HEAD. Delta bases are this commit's tensors, so a run's checkpoints are encoded
        against the same run's previous ones."""
        run = self.repo.commit_context.get("experiment_id")
        if run:
            line = self.commit_graph.refs.resolve_ref(graph.run_ref(run))
            return line.decode("ascii") if line else self._run_base(run)
        return self._head_commit()

    def _work_tree(self, ctx: Mapping[str, str]) -> str | None:
        """The git work tree whose identity signs commits: the run's, else the store's."""
        if ctx.get("work_tree"):
            return ctx["work_tree"]
        from .workspace import find_work_tree

        found = find_work_tree(self.repo.root)
        return str(found) if found else None

    def _head_commit(self) -> str | None:
        return self.repo.head_commit()

    # -- the stage file: `coralx add` in one process, `coralx commit` in the next -------------

    def save_stage(self) -> Path:
        """Merge the in-memory stage into ``.coralx/STAGE.json`` (for the CLI)."""
        path = self.repo.path / STAGE_FILE
        with self._lock("stage.lock"):
            doc = _read_json(path) or {"format": 1, "tensors": {}}
            for name, t in self.staged.items():
                doc["tensors"][name] = t.entry.to_dict()
            _fs.atomic_write(path, json.dumps(doc))
        self.staged = {}
        return path

    def _load_stage_file(self) -> dict[str, StagedTensor]:
        from .store.manifest import TensorEntry
        from .store.weights import StagedTensor

        doc = _read_json(self.repo.path / STAGE_FILE)
        if not doc or not doc.get("tensors"):
            return {}
        try:
            staged = {n: StagedTensor(TensorEntry.from_dict(e)) for n, e in doc["tensors"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreCorrupted(
                f"{STAGE_FILE} is unreadable ({exc}); remove it and stage again"
            ) from None
        return staged

    def staged_names(self) -> list[str]:
        """Names staged in this process, or else in the stage file."""
        if self.staged:
            return list(self.staged)
        doc = _read_json(self.repo.path / STAGE_FILE) or {}
        return list(doc.get("tensors", {}))

    # -- reading -----------------------------------------------------------------------------

    def manifest(self, commit: str) -> Manifest | None:
        if commit not in self._manifests:
            self._manifests[commit] = graph.read_manifest(self.git, commit)
        return self._manifests[commit]

    def _manifest_of(self, rev: str | None) -> tuple[str, Manifest]:
        from .store.manifest import Manifest

        commit = self.resolve(rev or "HEAD")
        return commit, self.manifest(commit) or Manifest()

    def _read_manifest(self, rev: str) -> tuple[str, Manifest]:
        """Like :meth:`_manifest_of` for the read paths, which refuse ``None``: a run
        without a commit has ``commit_hash`` None, and that must not mean HEAD."""
        if rev is None:
            raise InvalidValue(
                "no revision given (None): pass a commit id, branch, tag or experiment id, or "
                "'HEAD' for the latest; a run that never committed weights has commit_hash None"
            )
        return self._manifest_of(rev)

    def get_all_weights(
        self, rev: str, framework: str = "numpy", *, names: Any = None
    ) -> dict[str, Any]:
        from .store.reader import select_names
        from .store.weights import read_tensors

        commit, manifest = self._read_manifest(rev)
        chosen = select_names(manifest, commit, names=None if names is None else list(names))
        arrays = read_tensors(self.chunks, manifest, chosen, commit)
        return convert_arrays(arrays, framework)

    def get_weight(self, name: str, rev: str, framework: str = "numpy") -> Any:
        return self.get_all_weights(rev, framework, names=[name])[name]

    def open(self, rev: str, framework: str = "numpy") -> WeightReader:
        """A read-only mapping of a revision's tensors, decoded on access."""
        from .store.reader import WeightReader

        commit, manifest = self._read_manifest(rev)
        return WeightReader(self.chunks, manifest, commit, framework)

    def show(self, rev: str | None) -> dict[str, Any]:
        """A commit and the list of its tensors (dtype, shape, size, chunks)."""
        commit, manifest = self._manifest_of(rev)
        info = graph.read_commit(self.git, commit).to_dict()
        info["tensors"] = {
            name: {
                "dtype": e.dtype,
                "shape": list(e.shape),
                "nbytes": e.nbytes,
                "chunks": len(e.chunks),
            }
            for name, e in manifest.tensors.items()
        }
        info["nbytes"] = manifest.nbytes
        return info

    def export(
        self,
        rev: str,
        path: str | os.PathLike[str],
        progress: Callable[[int], None] | None = None,
        *,
        only: Any = None,
    ) -> dict[str, Any]:
        """Write a commit's tensors (or those matching the globs ``only``) to a safetensors
        file, streamed chunk by chunk, under a temporary name renamed when complete."""
        from .store.manifest import Manifest
        from .store.reader import select_names
        from .store.weights import write_safetensors

        commit, manifest = self._read_manifest(rev)
        if only is not None:
            chosen = select_names(manifest, commit, patterns=list(only))
            manifest = Manifest({n: manifest.tensors[n] for n in chosen})
        info = graph.read_commit(self.git, commit)
        metadata = {
            "coralx_commit": info.commit_hash,
            "coralx_message": info.message,
            "coralx_author": info.author,
            "coralx_timestamp": info.timestamp.isoformat(),
        }
        for key in ("experiment_id", "code_commit", "code_branch"):
            value = getattr(info, key)
            if value:
                metadata[f"coralx_{key}"] = value
        dest = _fs.check_output_path(path, self.repo.path)
        if not dest.parent.is_dir():
            raise InvalidValue(f"cannot write {dest}: the folder {dest.parent} does not exist")
        with _fs.atomic_writer(dest, "wb") as f:
            size = write_safetensors(f, self.chunks, manifest, metadata, commit, progress)
        return {"path": str(dest), "commit": commit, "bytes": size, "tensors": len(manifest)}

    # -- revisions, HEAD, branches, tags: the commit graph (graph.py) -------------------------

    @property
    def commit_graph(self) -> graph.Graph:
        """The store's refs and history (every ref move goes through its compare-and-swap)."""
        if self._graph is None:
            self._graph = graph.Graph(self.git, self.repo.path / REFS_LOCK, _RunRecords(self))
        return self._graph

    def resolve(self, rev: str) -> str:
        """A commit id for a revision (see ``Repository.resolve``)."""
        return self.commit_graph.resolve(rev)

    def checkout(self, rev: str) -> graph.WeightCommit:
        """Point HEAD at a branch (attached) or at any other revision (detached)."""
        return self.commit_graph.checkout(rev)

    def create_branch(
        self, name: str, rev: str | None = None, force: bool = False
    ) -> graph.BranchInfo:
        return self.commit_graph.create_branch(name, rev, force)

    def branches(self) -> list[graph.BranchInfo]:
        return self.commit_graph.branches()

    def tag(self, name: str, rev: str | None = None, message: str | None = None) -> graph.TagInfo:
        return self.commit_graph.tag(name, rev, message, _author(self._work_tree({})))

    def tags(self) -> list[graph.TagInfo]:
        return self.commit_graph.tags()

    def log(
        self, rev: str | None, limit: int | None, run: str | None = None
    ) -> list[graph.WeightCommit]:
        return self.commit_graph.log(rev, limit, run)

    # -- comparing ---------------------------------------------------------------------------

    def diff(self, rev_a: str, rev_b: str) -> WeightDiff:
        """What changed from ``rev_a`` to ``rev_b``, tensor by tensor, chunk by chunk."""
        ca, ma = self._manifest_of(rev_a)
        cb, mb = self._manifest_of(rev_b)
        out = WeightDiff(ca, cb)
        out.added = [n for n in mb if n not in ma.tensors]
        out.removed = [n for n in ma if n not in mb.tensors]
        for name in (n for n in mb if n in ma.tensors):
            ea, eb = ma.tensors[name], mb.tensors[name]
            if ea.chunks == eb.chunks and ea.dtype == eb.dtype and ea.shape == eb.shape:
                out.unchanged.append(name)
                continue
            out.changed.append(_tensor_change(self.chunks, name, ea, eb, ca, cb))
        return out

    # -- maintenance --------------------------------------------------------------------------

    def root_commits(self) -> list[str]:
        """Commits gc keeps with their ancestors: branches, tags, run lines, fetched branches,
        HEAD and experiment records."""
        roots: set[str] = set(self.commit_graph.root_refs())
        folder = self.repo.path / "experiments"
        for path in folder.glob("*.json") if folder.is_dir() else []:
            record = _read_json(path) or {}
            named = [record.get("commit_hash"), *(record.get("weight_commits") or [])]
            for commit in named:
                if (
                    isinstance(commit, str)
                    and len(commit) == 40
                    and is_hex(commit)
                    and commit.encode() in self.git.object_store
                ):
                    roots.add(commit)
        return sorted(roots)

    def reachable_commits(self) -> list[str]:
        return list(graph.iter_ancestors(self.git, self.root_commits()))

    def _reachable_chunks(self, commits: list[str]) -> dict[str, list[tuple[str, str]]]:
        """chunk id -> the (commit, tensor) pairs using it, staged tensors included."""
        users: dict[str, list[tuple[str, str]]] = {}
        for commit in commits:
            manifest = self.manifest(commit)
            for name, entry in manifest.tensors.items() if manifest else []:
                for cid in entry.chunks:
                    users.setdefault(cid, []).append((commit, name))
        staged = self._load_stage_file()
        for name, t in {**staged, **self.staged}.items():
            for cid in t.entry.chunks:
                users.setdefault(cid, []).append(("(staged)", name))
        return users

    def gc(self, prune_age: float = DEFAULT_PRUNE_AGE, dry_run: bool = False) -> GcReport:
        """Delete chunks nothing reaches (no ref, tag, HEAD, experiment record or stage), and
        that are older than ``prune_age`` seconds, so a chunk another process has just
        written or reused for a commit in progress is never taken."""
        with self._lock(GC_LOCK):
            commits = self.reachable_commits()
            keep = set(self._reachable_chunks(commits)) | self._pinned_chunks()
            for cid in list(keep):
                try:
                    keep.update(self.chunks.base_chain(cid))
                except StoreCorrupted:
                    continue  # fsck reports it; gc only must not delete what is reachable
            removed = freed = 0
            for cid in list(self.chunks.iter_ids()):
                if cid in keep or self.chunks.age_seconds(cid) < prune_age:
                    continue
                size = self.chunks.encoded_size(cid)
                if dry_run or self.chunks.delete(cid):
                    removed += 1
                    freed += size
            temps = self.chunks.prune_temp_files(max(prune_age, 3600.0), dry_run)
        return GcReport(len(commits), len(keep), removed, freed, temps, dry_run)

    def fsck(self) -> FsckReport:
        """Decode every reachable chunk against its id; name each damaged tensor and commit."""
        from .store.weights import verify_chunk

        damaged: list[dict[str, Any]] = []
        unreadable = _unreadable_object_errors()
        bad_manifest: tuple[type[BaseException], ...] = (StoreCorrupted, *unreadable)
        commits: list[str] = []
        try:
            commits = self.reachable_commits()
        except unreadable as exc:
            damaged.append({"chunk": None, "error": f"history unreadable: {exc}", "uses": []})
        readable = []
        for commit in commits:
            try:
                self.manifest(commit)
                readable.append(commit)
            except bad_manifest as exc:
                damaged.append({"chunk": None, "error": str(exc), "uses": [[commit, None]]})
        users = self._reachable_chunks(readable)
        for cid, uses in sorted(users.items()):
            problem = verify_chunk(self.chunks, cid)
            if problem:
                damaged.append({"chunk": cid, "error": problem, "uses": [list(u) for u in uses]})
        from .records.checks import check_store_files

        return FsckReport(len(commits), len(users), damaged, check_store_files(self.repo.path))

    def du(self) -> DuReport:
        commits = self.reachable_commits()
        logical = 0
        sizes: dict[str, int] = {}
        for commit in commits:
            manifest = self.manifest(commit)
            if manifest is None:
                continue
            logical += manifest.nbytes
            for entry in manifest.tensors.values():
                for cid, span in zip(entry.chunks, entry.spans()):
                    sizes[cid] = span.stop - span.start
        stored = 0
        ids = list(self.chunks.iter_ids())
        for cid in ids:
            try:
                stored += self.chunks.encoded_size(cid)
            except ChunkNotFound:
                continue
        disk, files = disk_usage(Path(getattr(self.chunks, "root", self.repo.path / "chunks")))
        return DuReport(len(commits), len(ids), logical, sum(sizes.values()), stored, disk, files)


# -- helpers -------------------------------------------------------------------------------------


def disk_usage(folder: Path) -> tuple[int, int]:
    """Space the files under ``folder`` take on disk (``st_blocks`` x 512, as ``du`` counts;
    the apparent size where a file system reports no blocks), and how many files there are."""
    total = count = 0
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:  # removed by a concurrent gc: not there any more
                continue
            blocks = getattr(st, "st_blocks", None)
            total += blocks * 512 if blocks is not None else st.st_size
            count += 1
    return total, count


def _unreadable_object_errors() -> tuple[type[BaseException], ...]:
    """What reading a damaged git object raises (a bad zlib stream, a malformed object)."""
    import zlib

    from dulwich.errors import ObjectFormatException

    return (KeyError, ValueError, zlib.error, ObjectFormatException)


def _author(work_tree: str | None = None) -> str:
    from .identity import author_identity

    return author_identity(work_tree)


class _RunRecords:
    """The graph's view of the store's experiment records: ids by prefix, a run's commit."""

    def __init__(self, weights: WeightHistory) -> None:
        self.folder = weights.repo.path / "experiments"

    def with_prefix(self, prefix: str) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(
            p.stem
            for p in self.folder.glob(f"{prefix}*.json")
            if len(p.stem) == 20 and is_hex(p.stem)
        )

    def commit_of(self, experiment_id: str) -> str | None:
        record = _read_json(self.folder / f"{experiment_id}.json") or {}
        commit = record.get("commit_hash")
        if not commit:
            history = record.get("weight_commits") or []
            commit = history[-1] if history else None
        return commit if isinstance(commit, str) and commit else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def convert_arrays(arrays: dict[str, np.ndarray[Any, Any]], framework: str) -> dict[str, Any]:
    """numpy arrays as the framework asked for (``numpy`` or ``torch``)."""
    if framework == "numpy":
        return dict(arrays)
    if framework in ("torch", "pt"):
        from .store.torch_compat import numpy_to_torch

        return {name: numpy_to_torch(a) for name, a in arrays.items()}
    raise InvalidValue(f"unknown framework {framework!r}; use 'numpy' or 'torch'")


def read_weights_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The tensors of a ``.safetensors`` or ``.npz`` file (never unpickles anything)."""
    import zipfile

    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise InvalidValue(f"{p} is not a file")
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        from .store.safetensors_io import read_safetensors

        return dict(read_safetensors(p)[0])
    if suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except ValueError as exc:
            raise InvalidValue(f"{p} cannot be read without unpickling: {exc}") from None
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise InvalidValue(f"{p} is not a readable .npz file: {exc}") from None
    raise InvalidValue(f"{p}: coralx adds .safetensors and .npz files (never pickles)")


def _tensor_change(store: Any, name: str, ea: Any, eb: Any, ca: str, cb: str) -> TensorChange:
    import numpy as np

    from .store.tensors import dtype_by_name

    change = TensorChange(
        name, (ea.dtype, eb.dtype), (list(ea.shape), list(eb.shape)), None, None, None
    )
    if ea.dtype != eb.dtype or ea.shape != eb.shape:
        return change
    dtype = dtype_by_name(ea.dtype)
    max_abs = 0.0
    sq = 0.0
    differing = 0
    for a_id, b_id in zip(ea.chunks, eb.chunks):
        if a_id == b_id:
            continue
        a_raw = store.get(a_id, f"tensor {name!r} in commit {ca}")
        b_raw = store.get(b_id, f"tensor {name!r} in commit {cb}")
        differing += int(np.count_nonzero(a_raw.view(dtype.uint) != b_raw.view(dtype.uint)))
        with np.errstate(all="ignore"):
            delta = b_raw.view(dtype.numpy).astype(np.float64) - a_raw.view(dtype.numpy).astype(
                np.float64
            )
            finite = delta[np.isfinite(delta)]
        if finite.size:
            max_abs = max(max_abs, float(np.max(np.abs(finite))))
            sq += float(np.dot(finite, finite))
    change.max_abs_change = max_abs
    change.l2_change = float(np.sqrt(sq))
    change.fraction_changed = differing / ea.numel if ea.numel else 0.0
    return change
