"""Push, fetch and pull between a store and a remote (a folder or an S3 bucket).

What travels, in this order, so that an interrupted transfer (kill -9, a dropped connection)
leaves both sides consistent and a rerun sends only what is still missing:

1. chunks the remote lacks, as they are stored (known-on-remote record, then a HEAD per
   chunk for a few, except new deltas, or one listing for many), 8 in parallel, each by a
   conditional create;
2. beside them (they name no chunk), blobs, sweep files and the new bytes of each metric
   journal (append-only, unique ids);
3. git objects: commits, manifests, code-snapshot trees (a folder remote is a bare git
   repository and gets ordinary loose objects; S3 gets one pack per push);
4. experiment records (after everything they name);
5. refs, last, each by compare-and-swap on the version read when the push was planned
   (one request each): a push that would not fast-forward, or whose ref moved, is refused.

A pull downloads into a temporary folder and verifies every chunk against its id (decoded,
its base from the cache of decoded bases, while the other downloads run), every blob against
its hash, and every git object against its id, and only then lands them; refs move last.
Then the index is rebuilt from the pulled records.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _fs, graph
from ..errors import (
    ChecksumMismatch,
    ConcurrentUpdate,
    CoralxError,
    InvalidValue,
    PushRejected,
    RemoteCorrupted,
    RemoteError,
    StoreCorrupted,
)
from ..ids import is_hex
from ..store.base import ChunkStore
from .chunks import ObjectChunkStore, chunk_key
from .transport import FolderTransport, Transport, key

if TYPE_CHECKING:
    from ..repository import Repository

__all__ = ["REMOTE_FORMAT", "PullReport", "PushReport", "RemoteStore", "fetch", "push"]

REMOTE_FORMAT = 1
FORMAT_KEY = "coralx-remote.json"
WORKERS = 8
FEW = 256  # below this many unknown chunks, one HEAD each; above, list prefixes
_ID20 = re.compile(r"^[0-9a-f]{20}$")
_SEG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


@dataclass
class PushReport:
    remote: str
    chunks_sent: int = 0
    chunk_bytes: int = 0
    chunks_checked: int = 0
    objects_sent: int = 0
    files_sent: int = 0
    bytes_sent: int = 0
    refs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PullReport:
    remote: str
    chunks_received: int = 0
    objects_received: int = 0
    files_received: int = 0
    bytes_received: int = 0
    refs: dict[str, str] = field(default_factory=dict)
    updated_branch: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the remote side ------------------------------------------------------------------------------


class _TransportRefs(graph.RefStore):
    """Refs as objects (``refs/heads/main`` holds the id): the primitive is a conditional
    write, ``If-None-Match: *`` to create and ``If-Match: <ETag>`` to replace.

    Each read remembers the version (ETag) it saw, so a swap from the value read last
    writes on that version straight away: if the ref moved since, the server refuses the
    write and the ref is read again (the swap then fails unless it still holds ``old``).
    A push's final compare-and-swap is thus one request."""

    def __init__(self, transport: Transport) -> None:
        self.t = transport
        self._seen: dict[str, tuple[bytes | None, str | None]] = {}  # key -> (value, ETag)

    def _read_key(self, k: str) -> bytes | None:
        got = self.t.read_tagged(k)
        value = got[0].strip() if got is not None else None
        self._seen[k] = (value, got[1] if got is not None else None)
        return value

    def read(self, ref: bytes) -> bytes | None:
        return self._read_key(key(graph.check_ref(ref).decode()))

    def _swap(self, ref: bytes, old: bytes | None, new: bytes | None) -> bool:
        if new is None:
            return False
        k = key(ref.decode())
        seen = self._seen.pop(k, None)
        fresh = seen is not None and seen[0] == old and (old is None or bool(seen[1]))
        if fresh and self.t.put_if(k, new + b"\n", seen[1] if seen else None):
            return True
        now = self.t.read_tagged(k)
        if (now[0].strip() if now else None) != old:
            return False
        return self.t.put_if(k, new + b"\n", now[1] if now else None)

    def names(self, prefix: bytes = b"refs/") -> dict[bytes, bytes]:
        keys = [item.key for item in self.t.list(prefix.decode())]
        with ThreadPoolExecutor(min(WORKERS, max(1, len(keys)))) as pool:
            values = list(pool.map(self._read_key, keys))
        return {
            k.encode(): v
            for k, v in zip(keys, values)
            if v is not None and re.fullmatch(rb"[0-9a-f]{40}", v)
        }


class RemoteStore:
    """One remote, opened: its transport, chunks, refs and git objects.

    A folder remote is a bare git repository (``git clone`` and ``git log`` work on it)
    plus coralx's folders; an S3 remote holds the same keys as objects, with git objects
    in packs under ``git/packs/``.
    """

    def __init__(self, name: str, transport: Transport) -> None:
        self.name = name
        self.transport = transport
        self.chunks = ObjectChunkStore(transport)
        self.is_folder = isinstance(transport, FolderTransport)
        self._git: Any = None
        self.refs: graph.RefStore = (
            graph.LocalRefs(self.git)
            if self.is_folder and self.exists()
            else _TransportRefs(transport)
        )

    # -- format -----------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.transport.head(FORMAT_KEY) is not None

    def check_format(self, create: bool) -> None:
        """Refuse a remote written by a newer coralx; create the marker on a first push."""
        try:
            raw = self.transport.get(FORMAT_KEY)
        except RemoteError:
            raw = None
        if raw is None:  # an unreachable endpoint, a missing bucket, bad credentials: say so
            self.transport.check()
            raw = self.transport.get(FORMAT_KEY)
        if raw is None:
            if not create:
                raise RemoteError(
                    f"{self.transport.url} is not a coralx remote yet (nothing was pushed); "
                    "push to it first"
                )
            if self.is_folder:
                self._init_folder()
            doc = json.dumps({"format": REMOTE_FORMAT, "kind": "coralx-remote"}).encode()
            self.transport.put_if(FORMAT_KEY, doc, None)
            return
        try:
            version = json.loads(raw)["format"]
        except (ValueError, KeyError, TypeError):
            raise RemoteCorrupted(f"{self.transport.url}: {FORMAT_KEY} is unreadable") from None
        if not isinstance(version, int) or version > REMOTE_FORMAT:
            raise RemoteError(
                f"{self.transport.url} was written by a newer coralx (remote format "
                f"{version}; this coralx reads up to {REMOTE_FORMAT}): upgrade coralx"
            )

    def _init_folder(self) -> None:
        from dulwich.repo import Repo

        root = Path(self.transport.url)
        if not (root / "HEAD").exists():
            root.mkdir(parents=True, exist_ok=True)
            Repo.init_bare(str(root), mkdir=False, default_branch=b"main")
        self._git = None
        self.refs = graph.LocalRefs(self.git)

    @property
    def git(self) -> Any:
        if self._git is None:
            from dulwich.repo import Repo

            self._git = Repo(str(self.transport.url))
            self._git.object_store.fsync_object_files = True
        return self._git

    # -- git objects ----------------------------------------------------------------------------

    def send_objects(self, objects: list[Any]) -> int:
        if not objects:
            return 0
        if self.is_folder:
            store = self.git.object_store
            sent = 0
            for obj in objects:
                if obj.id not in store:
                    store.add_object(obj)
                    sent += 1
            return sent
        import hashlib
        import io

        from dulwich.object_format import DEFAULT_OBJECT_FORMAT
        from dulwich.pack import write_pack_objects

        buf = io.BytesIO()
        write_pack_objects(buf, [(o, None) for o in objects], DEFAULT_OBJECT_FORMAT)
        data = buf.getvalue()
        name = hashlib.sha1(data).hexdigest()
        self.transport.put(key("git", "packs", f"{name}.pack"), data)
        return len(objects)

    def fetch_objects(self, local_git: Any, wants: list[bytes], seen_packs: set[str]) -> list[Any]:
        """The git objects the local store lacks (verified), not yet added."""
        if self.is_folder:
            remote = self.git.object_store
            haves = [s for s in _local_ref_values(local_git) if s in remote]
            wants = [w for w in wants if w in remote]
            if not wants:
                return []
            found = _find_missing(remote, haves, wants)
            out = []
            for sha, _path in found:
                if sha in local_git.object_store:
                    continue
                out.append(_verified(remote[sha], sha))
            return out
        out = []
        for item in self.transport.list("git/packs/"):
            name = item.key.rsplit("/", 1)[-1]
            if name in seen_packs or not name.endswith(".pack"):
                continue
            data = self.transport.get(item.key)
            if data is None:
                continue
            out.extend(_unpack(data, item.key))
            seen_packs.add(name)
        return [o for o in out if o.id not in local_git.object_store]


def _verified(obj: Any, sha: bytes) -> Any:
    from dulwich.objects import ShaFile

    copy = ShaFile.from_raw_string(obj.type_num, obj.as_raw_string())
    if copy.id != sha:
        raise RemoteCorrupted(f"git object {sha.decode()} on the remote is damaged")
    return copy


def _unpack(data: bytes, where: str) -> list[Any]:
    import io

    from dulwich.object_format import DEFAULT_OBJECT_FORMAT
    from dulwich.objects import ShaFile
    from dulwich.pack import PackData

    pack = None
    try:
        pack = PackData.from_file(io.BytesIO(data), DEFAULT_OBJECT_FORMAT, len(data))
        pack.check()
        return [
            ShaFile.from_raw_chunks(u.obj_type_num, u.obj_chunks)  # type: ignore[arg-type]
            for u in pack.iter_unpacked()
        ]
    except Exception as exc:  # a truncated or damaged pack: refuse it, name it
        raise RemoteCorrupted(f"{where} on the remote is damaged or truncated ({exc})") from None
    finally:
        if pack is not None:
            pack.close()


def _local_ref_values(git: Any) -> list[bytes]:
    return list({v for v in git.refs.as_dict(b"refs").values()})


# -- local state: what is known to be on the remote ----------------------------------------------


class _State:
    """``.coralx/remotes/<name>/``: chunk ids known on the remote (an append-only list), and
    what was last sent or received of each file (journal offsets, record tags, packs)."""

    def __init__(self, repo: Repository, name: str) -> None:
        self.folder = repo.path / "remotes" / key(name)
        self.known_path = self.folder / "chunks.known"
        self.doc_path = self.folder / "state.json"
        self._known: set[str] | None = None
        try:
            self.doc: dict[str, Any] = json.loads(self.doc_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            self.doc = {}
        for k in ("sent", "received", "packs"):
            self.doc.setdefault(k, {} if k != "packs" else [])

    @property
    def known(self) -> set[str]:
        if self._known is None:
            try:
                lines = self.known_path.read_text(encoding="ascii").split()
            except (FileNotFoundError, UnicodeDecodeError):
                lines = []
            self._known = {c for c in lines if len(c) == 64 and is_hex(c)}
        return self._known

    def add_known(self, ids: Iterable[str]) -> None:
        new = [c for c in ids if c not in self.known]
        if not new:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.known_path, "a", encoding="ascii") as f:
            f.write("".join(c + "\n" for c in new))
            f.flush()
            os.fsync(f.fileno())
        self.known.update(new)

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        _fs.atomic_write(self.doc_path, json.dumps(self.doc))


# -- push -----------------------------------------------------------------------------------------


def push(
    repo: Repository,
    remote: RemoteStore,
    branches: list[str] | None = None,
    force: bool = False,
) -> PushReport:
    """Send what the remote lacks; move its refs last, by compare-and-swap."""
    remote.check_format(create=True)
    state = _State(repo, remote.name)
    report = PushReport(remote.name)
    start_bytes = remote.transport.sent
    git: Any = repo.git
    local = graph.LocalRefs(git)
    updates = _refs_to_push(repo, local, branches)
    remote_refs = remote.refs.names(b"refs/")  # the refs' values, read once (and versions)
    plan: dict[bytes, tuple[bytes | None, bytes]] = {}
    for ref, new in updates.items():
        old = remote_refs.get(ref)  # absent: created only if still absent (the swap checks)
        if old == new:
            continue
        if old is not None and not force and not _is_ancestor(git, old, new):
            kind = "tag" if ref.startswith(b"refs/tags/") else "branch"
            raise PushRejected(
                f"push to {remote.name} rejected: {kind} {ref.decode()} on the remote has "
                "commits you do not have (not a fast-forward); run `coralx fetch "
                f"{remote.name}` (or `coralx pull`) first, or push with --force to replace it"
            )
        plan[ref] = (old, new)
    haves = [o for o, _n in plan.values() if o is not None and o in git.object_store]
    haves += [v for v in remote_refs.values() if v in git.object_store]
    wants = [n for _o, n in plan.values()]
    records = _changed_records(repo, state)
    snapshots = [t for t in (_snapshot_of(r) for _p, r in records) if t]
    sent_trees = set(state.doc.setdefault("snapshots", []))
    snapshots = [
        t for t in set(snapshots) if t in git.object_store and t.decode() not in sent_trees
    ]
    haves += [t.encode() for t in sent_trees]
    objects = _missing_objects(git, haves, wants + snapshots, state)
    chunk_ids = _chunks_of(repo, objects)
    # Blobs, sweep files and journal segments name no chunk: they travel beside the chunks.
    with ThreadPoolExecutor(1) as side:
        files = side.submit(_send_files, repo, remote, state)
        _send_chunks(repo, remote, state, chunk_ids, report)
        marks = files.result()
    _mark_sent(state, marks, report)
    report.objects_sent = remote.send_objects(objects)
    state.doc["snapshots"] = sorted(sent_trees | {t.decode() for t in snapshots})
    _send_records(remote, state, [path for path, _rec in records], report)
    state.save()
    _move_refs(remote, plan, report)
    report.bytes_sent = remote.transport.sent - start_bytes  # everything: packs and refs too
    return report


def _send_records(
    remote: RemoteStore, state: _State, paths: list[Path], report: PushReport
) -> None:
    """The records (each names only what was confirmed on the remote before), side by side."""

    def send(path: Path) -> str:
        fingerprint = _fingerprint(path)  # before reading: a record changed meanwhile is resent
        remote.transport.put(key("experiments", path.name), path.read_bytes())
        return fingerprint

    with ThreadPoolExecutor(WORKERS) as pool:
        for path, fingerprint in zip(paths, pool.map(send, paths)):
            state.doc["sent"][f"experiments/{path.name}"] = fingerprint
            report.files_sent += 1


def _move_refs(
    remote: RemoteStore, plan: dict[bytes, tuple[bytes | None, bytes]], report: PushReport
) -> None:
    """Every ref by compare-and-swap, last (side by side: each is its own swap)."""

    def move(item: tuple[bytes, tuple[bytes | None, bytes]]) -> bytes | None:
        ref, (old, new) = item
        try:
            graph.swap(remote.refs, ref, old, new)
        except ConcurrentUpdate:
            return ref
        return None

    items = sorted(plan.items())
    with ThreadPoolExecutor(min(WORKERS, max(1, len(items)))) as pool:
        refused = [r for r in pool.map(move, items) if r is not None]
    for ref, (_old, new) in items:
        if ref not in refused:
            report.refs[ref.decode()] = new.decode()
    if refused:
        raise PushRejected(
            f"push to {remote.name} rejected: {refused[0].decode()} moved on the remote while "
            f"pushing; run `coralx fetch {remote.name}` first, or push with --force"
        )


def _refs_to_push(
    repo: Repository, local: graph.LocalRefs, branches: list[str] | None
) -> dict[bytes, bytes]:
    names = branches if branches else [b for b in [repo.current_branch()] if b]
    out: dict[bytes, bytes] = {}
    for name in names:
        ref = f"refs/heads/{name}".encode()
        value = local.resolve_ref(graph.check_ref(ref))
        if value is None:
            raise InvalidValue(f"there is no branch {name!r} to push; see `coralx branch`")
        from . import is_empty_root

        if not is_empty_root(repo.git, value):  # a store's bare first commit is not shared
            out[ref] = value
    for space in (b"refs/tags/", b"refs/runs/"):
        out.update(local.names(space))
    return out


def _is_ancestor(git: Any, old: bytes, new: bytes) -> bool:
    if old not in git.object_store:
        return False
    return any(entry.commit.id == old for entry in git.get_walker(include=[new]))


def _missing_objects(git: Any, haves: list[bytes], wants: list[bytes], state: _State) -> list[Any]:
    if not wants:
        return []
    found = _find_missing(git.object_store, haves, wants)
    return [git.object_store[sha] for sha, _path in found]


def _find_missing(store: Any, haves: list[bytes], wants: list[bytes]) -> Any:
    """git's negotiation: the objects reachable from ``wants`` and not from ``haves``."""
    from dulwich.object_store import MissingObjectFinder

    haves = [h for h in set(haves) if h in store]
    return iter(MissingObjectFinder(store, haves, list(set(wants))))  # type: ignore[arg-type]


def _chunks_of(repo: Repository, objects: list[Any]) -> set[str]:
    """Every chunk the manifests among ``objects`` name, with the bases their encoding
    goes through (a delta travels with its base)."""
    from dulwich.objects import Blob, Tree

    from ..store.manifest import Manifest

    store = repo.weights.chunks
    ids: set[str] = set()
    blobs = {o.id: o for o in objects if isinstance(o, Blob)}
    for tree in (o for o in objects if isinstance(o, Tree)):
        if graph.MANIFEST_NAME not in tree:
            continue
        _mode, blob_id = tree[graph.MANIFEST_NAME]
        blob = blobs.get(blob_id)
        if blob is None:
            continue
        try:
            ids.update(Manifest.from_json(blob.as_raw_string()).chunk_ids())
        except (ValueError, KeyError, TypeError, StoreCorrupted):
            continue  # not a coralx manifest (a code snapshot's own manifest.json)
    for cid in list(ids):
        ids.update(store.base_chain(cid))
    return ids


def _send_chunks(
    repo: Repository, remote: RemoteStore, state: _State, ids: set[str], report: PushReport
) -> None:
    """Send the chunks the remote lacks, as they are stored here (already encoded: a new
    checkpoint's chunk is a delta on its group's whole chunk, which travels with it).

    What the remote has: the local record first. For many unknown chunks, one listing.
    For a few, a HEAD each, made by the worker that then sends the chunk, except for a
    delta chunk no push has tried to send before: a new version of a tensor trained here,
    which no other store has, goes without a HEAD. Every chunk is written by a conditional
    create, so an object already there (another store's encoding of the same bytes) is
    never replaced. The chunks being sent are recorded before the first PUT, so a push
    killed midway checks them all next time. Each worker runs its own chunk start to
    finish, largest first (no batch waits on its slowest member), and a chunk goes into the
    record of what is on the remote only once its PUT or HEAD succeeded (at the end: each
    record write is an fsync)."""

    store = repo.weights.chunks
    unknown = sorted(ids - state.known)
    report.chunks_checked = len(unknown)
    tried = set(state.doc.get("sending", []))
    if len(unknown) <= FEW:
        todo = unknown
        check = {c for c in unknown if c in tried or not store.read_header(c).is_delta}
    else:
        present = present_on_remote(remote.chunks, unknown)
        state.add_known(present)
        todo = [c for c in unknown if c not in present]
        check = set()
    if not todo:
        return
    todo.sort(key=store.encoded_size, reverse=True)
    state.doc["sending"] = sorted(tried | set(todo))
    state.save()

    def send(cid: str) -> int | None:
        if cid in check and remote.chunks.has(cid):
            return None
        data = store.get_raw_encoded(cid)
        return len(data) if remote.chunks.put_new(cid, data) else None

    confirmed: list[str] = []
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {pool.submit(send, cid): cid for cid in todo}
        try:
            for fut in as_completed(futures):
                size = fut.result()
                confirmed.append(futures[fut])
                if size is not None:
                    report.chunks_sent += 1
                    report.chunk_bytes += size
        finally:  # one fsync'd append, also when a transfer failed (kill -9: "sending" covers)
            for fut in futures:
                fut.cancel()
            state.add_known(confirmed)
    state.doc["sending"] = sorted(set(state.doc["sending"]) - state.known)  # saved by push


def present_on_remote(store: ObjectChunkStore, ids: list[str]) -> set[str]:
    """Which of ``ids`` the remote has: one HEAD each (in parallel) for a few, one listing
    of every chunk for many. Cutting the listing into parts listed concurrently (by leading
    hex digits, or ranges by start-after) was measured slower on both test servers: see
    docs/architecture.md."""
    if not ids:
        return set()
    if len(ids) <= FEW:
        with ThreadPoolExecutor(WORKERS) as pool:
            flags = list(pool.map(store.has, ids))
        return {c for c, ok in zip(ids, flags) if ok}
    listed = store.listed(None)
    return {c for c in ids if c in listed}


# -- files: records, journals, blobs, sweeps ------------------------------------------------------


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{st.st_mtime_ns}-{st.st_size}"


def _changed_records(repo: Repository, state: _State) -> list[tuple[Path, dict[str, Any]]]:
    folder = repo.path / "experiments"
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if not _ID20.match(path.stem):
            continue
        rel = f"experiments/{path.name}"
        if state.doc["sent"].get(rel) == _fingerprint(path) or rel in state.doc["received"]:
            continue  # sent as it is, or another store's run (its owner pushes it)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        out.append((path, record))
    return out


def _snapshot_of(record: dict[str, Any]) -> bytes | None:
    snap = (record.get("code") or {}).get("snapshot")
    if isinstance(snap, str) and len(snap) == 40 and is_hex(snap):
        return snap.encode()
    return None


def _journal_files(repo: Repository) -> Iterator[Path]:
    folder = repo.path / "experiments"
    for path in sorted(folder.glob("*.metrics")) if folder.is_dir() else []:
        if _ID20.match(path.stem):
            yield path


def _tree_files(root: Path, sub: str) -> Iterator[tuple[str, Path]]:
    """Files under ``root/sub`` whose every path segment is a safe key segment."""
    base = root / sub
    if not base.is_dir():
        return
    for dirpath, _dirs, files in os.walk(base):
        for name in files:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if name.startswith(_fs.TEMP_PREFIX) or name.endswith(".lock"):
                continue
            if all(_SEG.match(s) and ".." not in s for s in rel.split("/")):
                yield rel, path


def _send_files(repo: Repository, remote: RemoteStore, state: _State) -> list[tuple[str, str]]:
    """Send the blobs, sweep files and journal bytes not sent yet; return what to note as
    sent (the caller notes it: this runs beside the chunks' upload, which saves the state)."""
    sent = state.doc["sent"]
    jobs: list[tuple[str, Callable[[], bytes], str]] = []
    for rel, path in _tree_files(repo.path, "blobs"):
        if rel not in sent:
            jobs.append((rel, path.read_bytes, "done"))
    for rel, path in _tree_files(repo.path, "sweeps"):
        fp = _fingerprint(path)
        if sent.get(rel) != fp:
            jobs.append((rel, path.read_bytes, fp))
    for path in _journal_files(repo):
        offset = int(sent.get(f"journal/{path.stem}", 0))
        size = path.stat().st_size
        if size > offset:
            rel = key("journals", path.stem, f"{offset:016d}")

            def read(p: Path = path, at: int = offset, end: int = size) -> bytes:
                with open(p, "rb") as f:
                    f.seek(at)
                    return f.read(end - at)

            jobs.append((rel, read, f"journal/{path.stem}={size}"))

    def send(job: tuple[str, Callable[[], bytes], str]) -> int:
        rel, read, _mark = job
        data = read()
        remote.transport.put(key(rel), data)
        return len(data)

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(send, jobs))
    return [(rel, mark) for rel, _read, mark in jobs]


def _mark_sent(state: _State, marks: list[tuple[str, str]], report: PushReport) -> None:
    sent = state.doc["sent"]
    for rel, mark in marks:
        if mark.startswith("journal/"):
            name, _, end = mark.partition("=")
            sent[name] = int(end)
        else:
            sent[rel] = mark
        report.files_sent += 1


# -- fetch and pull -------------------------------------------------------------------------------


def fetch(repo: Repository, remote: RemoteStore) -> PullReport:
    """Bring the remote's objects, chunks, records and files here, verified; then update
    ``refs/remotes/<name>/*``, run lines and tags. Local branches do not move."""
    remote.check_format(create=False)
    state = _State(repo, remote.name)
    report = PullReport(remote.name)
    start_bytes = remote.transport.received
    git: Any = repo.git
    remote_refs = remote.refs.names(b"refs/")
    seen = set(state.doc["packs"])
    wants = list(set(remote_refs.values()))
    records = _new_records(repo, remote, state)
    wants += [t for t in (_snapshot_of(r) for _k, r, _t, _d in records) if t]
    objects = remote.fetch_objects(git, [w for w in wants if w not in git.object_store], seen)
    chunk_ids = _chunks_in(objects)
    _remove_stale_pulls(repo)
    tmp = repo.path / f"{_fs.TEMP_PREFIX}pull-{secrets.token_hex(4)}"
    try:
        landed = _receive_chunks(repo, remote, chunk_ids, tmp, report)
        blob_files = _receive_files(repo, remote, state, tmp, report)
        # Everything verified: land chunks, files, objects, records; refs last.
        _land_chunks(repo, landed)
        # On the remote: what was fetched from it, and every chunk its manifests name (it
        # took them only after those chunks were confirmed there). A push skips them.
        state.add_known(chunk_ids | set(landed))
        _land_files(blob_files)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    graph.write_objects(git.object_store, [o for o in objects if o.id not in git.object_store])
    report.objects_received = len(objects)
    state.doc["packs"] = sorted(seen)
    for rel, tag in _land_records(repo, records, state.doc["received"]):
        state.doc["received"][rel] = tag
        report.files_received += 1
    state.save()
    local = graph.LocalRefs(git)
    for ref, value in sorted(remote_refs.items()):
        target = _local_name(ref, remote.name)
        if target is None or value not in git.object_store:
            continue
        old = local.resolve_ref(target)
        if old == value:
            continue
        keep = target.startswith((b"refs/tags/", b"refs/runs/")) and old is not None
        if keep and old is not None and not _is_ancestor(git, old, value):
            continue  # a tag never moves; a run line here is ahead: keep ours
        graph.swap(local, target, old, value)
        report.refs[target.decode()] = value.decode()
    _reindex(repo)
    report.bytes_received = remote.transport.received - start_bytes
    return report


def _remove_stale_pulls(repo: Repository) -> None:
    """Download folders left by a pull killed more than an hour ago (nothing in them landed)."""
    import time

    for old in repo.path.glob(f"{_fs.TEMP_PREFIX}pull-*"):
        try:
            if time.time() - old.stat().st_mtime > 3600:
                shutil.rmtree(old, ignore_errors=True)
        except FileNotFoundError:
            continue


def _local_name(ref: bytes, remote: str) -> bytes | None:
    if ref.startswith(b"refs/heads/"):
        return b"refs/remotes/" + remote.encode() + b"/" + ref[len(b"refs/heads/") :]
    if ref.startswith((b"refs/tags/", b"refs/runs/")):
        return ref
    return None


def _chunks_in(objects: list[Any]) -> set[str]:
    from dulwich.objects import Blob, Tree

    from ..store.manifest import Manifest

    blobs = {o.id: o for o in objects if isinstance(o, Blob)}
    ids: set[str] = set()
    for tree in (o for o in objects if isinstance(o, Tree)):
        if graph.MANIFEST_NAME in tree:
            blob = blobs.get(tree[graph.MANIFEST_NAME][1])
            if blob is None:
                continue
            try:
                ids.update(Manifest.from_json(blob.as_raw_string()).chunk_ids())
            except (ValueError, KeyError, TypeError, StoreCorrupted):
                continue
    return ids


class _Overlay(ChunkStore):
    """Downloaded chunks (files in a temporary folder, and the transfer buffers of those
    being verified) in front of the local store, for verifying."""

    def __init__(self, fresh: dict[str, Path], local: ChunkStore) -> None:
        self.fresh = fresh
        self.held: dict[str, Any] = {}
        self.local = local

    def has(self, chunk_id: str) -> bool:
        return chunk_id in self.fresh or self.local.has(chunk_id)

    def get_raw_encoded(self, chunk_id: str) -> Any:
        held = self.held.get(chunk_id)
        if held is not None:
            return memoryview(held)
        if chunk_id in self.fresh:
            return self.fresh[chunk_id].read_bytes()
        return self.local.get_raw_encoded(chunk_id)

    def put_encoded(self, chunk_id: str, data: bytes, *, replace: bool = False) -> bool:
        raise NotImplementedError

    def delete(self, chunk_id: str) -> bool:
        raise NotImplementedError

    def iter_ids(self) -> Iterator[Any]:
        return iter(self.fresh)

    def encoded_size(self, chunk_id: str) -> int:
        return len(self.get_raw_encoded(chunk_id))


PULL_WORKERS = 16
"""Downloads in flight during a pull: more than a push's, so that the network stays busy
while the decoding threads verify what has arrived."""


def _receive_chunks(
    repo: Repository, remote: RemoteStore, ids: set[str], tmp: Path, report: PullReport
) -> dict[str, Path]:
    """Download the chunks this store lacks into ``tmp`` and verify each against its id
    before anything lands: decoded (a delta through its base, from the process's cache of
    decoded bases) and hashed. Downloads and verification overlap: each chunk is written
    (from the transfer's own buffer) by the thread that fetched it, its fsync started on
    threads of their own, or its writeback for one syncfs at the end (either way awaited
    before this returns: every file is durable before any is renamed into ``chunks/``), and
    handed to a decoding thread as soon as its base is verified. A delta whose base is
    damaged waits for it, so a damaged chunk is named itself, not through a delta built on
    it."""
    import queue
    from concurrent.futures import Future

    from ..store.codecs import CODEC_PLANES, decode_into, parse_header, scratch
    from ..store.weights import pool

    local = repo.weights.chunks
    fresh: dict[str, Path] = {}
    overlay = _Overlay(fresh, local)
    folder = tmp / "chunks"
    folder.mkdir(parents=True, exist_ok=True)

    def damaged(cid: str, exc: object) -> RemoteCorrupted:
        return RemoteCorrupted(
            f"chunk {cid} on {remote.name} is damaged or truncated ({exc}); nothing was pulled"
        )

    def download(cid: str) -> tuple[Any, Any]:
        data = remote.transport.get_buffer(chunk_key(cid))
        if data is None:
            raise RemoteCorrupted(
                f"chunk {cid} is named by a commit on {remote.name} but missing there"
            )
        try:
            head = parse_header(memoryview(data))
        except (StoreCorrupted, ValueError) as exc:
            raise damaged(cid, exc) from None
        _write_chunk_file(folder / cid, data, whole_fs)
        if not whole_fs:
            flushes.append(io.submit(_fs.fsync_path, folder / cid))
        return head, data

    def check(cid: str) -> None:
        import numpy as np

        from ..store.base import base_cache

        what = f"the remote {remote.name}"
        try:
            # The downloaded bytes themselves are decoded (never a cached copy of the chunk);
            # a delta's base comes from the cache of decoded bases, verified when cached.
            blob = overlay.get_raw_encoded(cid)
            head = parse_header(blob)
            # A whole chunk is kept (cached as a base); a delta's bytes are only hashed, in
            # the thread's reused buffer (no fresh pages to fault in for every chunk).
            whole = head.codec == CODEC_PLANES
            out = np.empty(head.raw_len, np.uint8) if whole else scratch("pull", head.raw_len)
            base = overlay.base_raw(head.base, what) if head.base is not None else None
            decode_into(blob, out, base, head)
            ChunkStore._verify(cid, out, what)
        except (ChecksumMismatch, StoreCorrupted, CoralxError) as exc:
            raise damaged(cid, exc) from None
        finally:
            overlay.held.pop(cid, None)
        if whole:  # the base the deltas of its group decode on
            out.flags.writeable = False
            base_cache.put(cid, out)

    requested = {c for c in ids if not local.has(c)}
    verified: set[str] = set()
    waiting: dict[str, list[str]] = {}  # a fresh base -> the deltas waiting for it
    # Finished jobs arrive on a queue (each future's callback puts it there): waiting on
    # hundreds of futures at once would take every future's lock for each completion.
    finished: queue.SimpleQueue[tuple[Future[Any], str, str]] = queue.SimpleQueue()
    jobs: set[Future[Any]] = set()
    cpu = pool()
    # Each file's fsync starts as soon as it is written, on threads of its own: the disk
    # works while the downloads go on (none waits for the disk), and the chunks are durable
    # by the time the last one is verified. Where one syncfs does it for all (ext4, XFS,
    # Btrfs: _fs.sync_whole_fs), each file's writeback starts as it is written instead, and
    # the syncfs waits for them at the end.
    whole_fs = _fs.syncfs_trusted(folder)
    io = ThreadPoolExecutor(8, thread_name_prefix="coralx-fsync")
    flushes: list[Future[None]] = []

    def start(executor: Any, fn: Callable[[str], Any], what: str, cid: str) -> None:
        fut = executor.submit(fn, cid)
        jobs.add(fut)
        fut.add_done_callback(lambda f: finished.put((f, what, cid)))

    with ThreadPoolExecutor(PULL_WORKERS) as net:
        try:
            for cid in sorted(requested):
                start(net, download, "get", cid)
            while jobs:
                fut, what, cid = finished.get()
                jobs.discard(fut)
                if what == "check":
                    fut.result()
                    verified.add(cid)
                    for delta in waiting.pop(cid, []):
                        start(cpu, check, "check", delta)
                    continue
                head, data = fut.result()
                fresh[cid] = folder / cid
                base = head.base if head.is_delta else None
                if base is not None and base not in verified:
                    if base not in requested and not local.has(base):
                        requested.add(base)  # a base the remote has and this store lacks
                        start(net, download, "get", base)
                    if base in requested:
                        waiting.setdefault(base, []).append(cid)  # read back when ready
                        continue
                overlay.held[cid] = data
                start(cpu, check, "check", cid)
            for flush in list(flushes):
                flush.result()
            if whole_fs and fresh and not _fs.sync_whole_fs(folder, _stored_bytes(fresh)):
                _fs.fsync_many(list(fresh.values()))  # others have much unwritten: ours alone
        finally:
            for fut in jobs:
                fut.cancel()
            io.shutdown(wait=True)
    if waiting:  # deltas whose bases never verified: a cycle of deltas
        cid = sorted(c for group in waiting.values() for c in group)[0]
        raise damaged(cid, "its delta chain does not end in a whole chunk")
    report.chunks_received = len(fresh)
    return fresh


def _write_chunk_file(path: Path, data: Any, writeback: bool = False) -> None:
    """A downloaded chunk as a read-only file, written from the transfer's buffer (made
    durable by the caller, off the download thread)."""
    _fs.write_new_file(path, data, 0o444, writeback)


def _stored_bytes(files: dict[str, Path]) -> int:
    return sum(path.stat().st_size for path in files.values())


def _land_chunks(repo: Repository, fresh: dict[str, Path]) -> None:
    """Move verified chunks into the store, durably, before anything names them here. On
    disk, the downloaded files (durable already: :func:`_receive_chunks` made them so before
    it returned, so no chunk file in ``chunks/`` can be torn by a power cut) are renamed
    into ``chunks/`` (written once, never copied), then their folders fsync'd; another
    store gets their bytes through its ``put_encoded``."""
    from ..store.disk import DiskChunkStore

    store = repo.weights.chunks
    if not isinstance(store, DiskChunkStore):
        with store.batch():
            for cid, path in fresh.items():
                store.put_encoded(cid, path.read_bytes())
        return
    items = sorted(fresh.items())
    folders: set[Path] = set()
    for cid, path in items:
        dest = store.path(cid)
        if dest.exists():
            continue
        _make_folder(dest.parent, folders)
        os.replace(path, dest)
    _fs.fsync_many(sorted(folders))


def _land_files(files: list[tuple[Path, Path]]) -> None:
    """Blobs and sweep files, the same way: made durable together, renamed into place,
    their folders fsync'd (before the records that name them land)."""
    _fs.fsync_many([src for _dest, src in files])
    folders: set[Path] = set()
    for dest, src in files:
        _make_folder(dest.parent, folders)
        os.replace(src, dest)
    _fs.fsync_many(sorted(folders))


def _make_folder(folder: Path, to_sync: set[Path]) -> None:
    """Make ``folder`` (and its missing parents); note which folders' entries to fsync: it,
    and the parent of each folder made."""
    to_sync.add(folder)
    made = folder
    while not made.is_dir():
        to_sync.add(made.parent)
        made = made.parent
    folder.mkdir(parents=True, exist_ok=True)


def _new_records(
    repo: Repository, remote: RemoteStore, state: _State
) -> list[tuple[str, dict[str, Any], str, bytes]]:
    """The remote's records this store lacks or has an older copy of: (key, record, version
    tag, the bytes as the remote has them), each checked to be its run's record."""
    got = state.doc["received"]
    listed = [
        i
        for i in remote.transport.list("experiments/")
        if i.key.endswith(".json") and _ID20.match(i.key.rsplit("/", 1)[-1][:-5])
    ]
    listed = [i for i in listed if got.get(i.key) != i.tag]
    # A record this store wrote itself (not received from a remote) is never replaced.
    listed = [i for i in listed if i.key in got or not (repo.path / key(i.key)).exists()]

    def read(item: Any) -> tuple[str, dict[str, Any], str, bytes]:
        data = remote.transport.get(item.key) or b""
        eid = item.key.rsplit("/", 1)[-1][:-5]
        try:
            record = json.loads(data)
            assert isinstance(record, dict) and record.get("experiment_id") == eid
        except (ValueError, AssertionError):
            raise RemoteCorrupted(f"{item.key} on {remote.name} is damaged") from None
        return item.key, record, item.tag, bytes(data)

    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(read, listed))


def _land_records(
    repo: Repository,
    records: list[tuple[str, dict[str, Any], str, bytes]],
    received: dict[str, str],
) -> list[tuple[str, str]]:
    """Write pulled records, all at once (each atomic: :func:`_fs.atomic_write_many`), as
    the remote has them (their bytes were checked to parse as the run's record); return the
    (key, version tag) of each written. Each run has one owner, the store it ran in, and
    records only grow there: another store's record is taken as the remote has it; a
    record this store wrote (pushed earlier) is never replaced by the remote's copy."""
    writes: list[tuple[Path, bytes]] = []
    landed: list[tuple[str, str]] = []
    for rel, _record, tag, data in records:
        path = repo.path / key(rel)
        if rel not in received and path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        writes.append((path, data))
        landed.append((rel, tag))
    _fs.atomic_write_many(writes)
    return landed


def _receive_files(
    repo: Repository, remote: RemoteStore, state: _State, tmp: Path, report: PullReport
) -> list[tuple[Path, Path]]:
    """Blobs (verified against their hash) and sweep files to land; journals are appended
    here at once (append-only: only the bytes past what is here are added)."""
    from blake3 import blake3

    got = state.doc["received"]
    land: list[tuple[Path, Path]] = []
    items = [i for i in remote.transport.list("blobs/") if got.get(i.key) != i.tag]
    items += [i for i in remote.transport.list("sweeps/") if got.get(i.key) != i.tag]
    items = [i for i in items if all(_SEG.match(s) for s in i.key.split("/"))]
    # A sweep file this store wrote itself (not received) is never replaced by a copy.
    items = [
        i
        for i in items
        if i.key.startswith("blobs/") or i.key in got or not (repo.path / key(i.key)).exists()
    ]
    (tmp / "files").mkdir(parents=True, exist_ok=True)

    def download(item: Any) -> tuple[Any, bytes]:
        data = remote.transport.get(item.key)
        if data is None:
            raise RemoteError(f"{item.key} vanished from {remote.name} while pulling; retry")
        return item, data

    with ThreadPoolExecutor(WORKERS) as pool:
        for item, data in pool.map(download, items):
            dest = repo.path / key(item.key)
            if item.key.startswith("blobs/"):
                expect = "".join(item.key.split("/")[1:3])
                if blake3(data).hexdigest() != expect:
                    raise RemoteCorrupted(f"{item.key} on {remote.name} is damaged or truncated")
                if dest.exists():
                    got[item.key] = item.tag
                    continue
            src = tmp / "files" / secrets.token_hex(8)
            src.write_bytes(data)
            land.append((dest, src))
            got[item.key] = item.tag
            report.files_received += 1
    _receive_journals(repo, remote, report)
    return land


def _receive_journals(repo: Repository, remote: RemoteStore, report: PullReport) -> None:
    """Append to each run's journal the bytes of the remote's segments past what is here
    (a journal only grows), the runs side by side: a segment wholly here already is not
    downloaded, and each journal is fsync'd once its segments are in."""
    segments: dict[str, list[tuple[int, str, int]]] = {}
    for item in remote.transport.list("journals/"):
        parts = item.key.split("/")
        if len(parts) == 3 and _ID20.match(parts[1]) and parts[2].isdigit():
            segments.setdefault(parts[1], []).append((int(parts[2]), item.key, item.size))

    def receive(eid: str) -> None:
        path = repo.path / "experiments" / f"{eid}.metrics"
        have = path.stat().st_size if path.exists() else 0
        wrote = False
        for offset, k, size in sorted(segments[eid]):
            if offset + size <= have:
                continue  # here already
            if offset > have:
                break  # a gap (a segment still on its way): the rest comes next time
            data = remote.transport.get(k)
            if data is None or offset + len(data) <= have:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as f:
                f.write(data[have - offset :])
            have = offset + len(data)
            wrote = True
        if wrote:
            _fs.fsync_path(path)

    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(receive, sorted(segments)))


def _reindex(repo: Repository) -> None:
    from ..records.store import RecordStore

    RecordStore(repo.path).sync(force=True)
