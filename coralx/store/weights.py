"""Writing tensors into chunks and reading them back: the weight engine.

Writing: a tensor's bytes are cut into fixed, element-aligned chunks; each is hashed (BLAKE3),
and if the store lacks it, encoded once and written. The versions of a chunk (the same chunk
of the same tensor, commit after commit) form groups: the first version of a group is stored
whole, and each later one as a delta on that whole chunk, until the group has
:data:`GROUP_LIMIT` versions. So any version decodes in at most two steps (the group's base,
cached between reads, and its delta), and a commit encodes each new chunk exactly once; no
work runs behind it. Why this layout: the measurements in docs/architecture.md.

Work is done in blocks (one chunk at a time per worker) on a small thread pool: numpy, zstd
and BLAKE3 release the GIL.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from .._pools import KeptPool
from ..errors import ChecksumMismatch, ChunkNotFound, InvalidName, InvalidValue
from .base import ChunkStore, base_cache, chunk_id_of
from .codecs import encode_delta_parts, encode_standalone_parts
from .manifest import Manifest, TensorEntry
from .tensors import CHUNK_BYTES, DType, chunk_spans, dtype_by_name, dtype_of, to_numpy

__all__ = [
    "GROUP_LIMIT",
    "StagedTensor",
    "check_tensor_name",
    "iter_tensor_chunks",
    "read_tensors",
    "stage_tensors",
]

GROUP_LIMIT = 16
"""Versions of a chunk stored as deltas on one whole chunk, at most (see the measurements
in docs/architecture.md)."""

_workers = KeptPool(lambda: max(2, min(4, os.cpu_count() or 2)), "coralx")


def pool() -> ThreadPoolExecutor:
    """The process's small worker pool (2-4 threads), created on first use."""
    return _workers.get()


def _bounded(tasks: Iterable[Callable[[], Any]], window: int) -> Iterator[Any]:
    """Run tasks on the pool, at most ``window`` at once, yielding results in order."""
    pending: list[Future[Any]] = []
    executor = pool()
    for task in tasks:
        pending.append(executor.submit(task))
        if len(pending) >= window:
            yield pending.pop(0).result()
    for fut in pending:
        yield fut.result()


BATCH_BYTES = 1 << 20
"""Chunks smaller than this go to the pool together, up to this many bytes a task: a model's
biases and norms are many chunks of a few KiB, and handing each to a thread on its own cost
more than the work (measured in docs/architecture.md)."""


def _batched(
    tasks: Iterable[tuple[int, Callable[[], Any]]],
) -> Iterator[Callable[[], list[Any]]]:
    """(bytes, task) pairs as pool tasks, each running one large task or several small
    ones in order and returning their results as a list (in the order given)."""
    limit = BATCH_BYTES
    group: list[Callable[[], Any]] = []
    size = 0
    for nbytes, task in tasks:
        if nbytes >= limit:
            if group:
                yield _run_all(group)
                group, size = [], 0
            yield _run_all([task])
            continue
        group.append(task)
        size += nbytes
        if size >= limit:
            yield _run_all(group)
            group, size = [], 0
    if group:
        yield _run_all(group)


def _run_all(group: list[Callable[[], Any]]) -> Callable[[], list[Any]]:
    return lambda: [task() for task in group]


def check_tensor_name(name: object) -> str:
    """A tensor name is any non-empty string without NUL (a safetensors key)."""
    if not isinstance(name, str):
        raise InvalidName("tensor name", name, "tensor names are strings")
    if not name or "\x00" in name:
        raise InvalidName("tensor name", name, "a tensor name cannot be empty or contain NUL")
    if name == "__metadata__":
        raise InvalidName("tensor name", name, "safetensors reserves this key")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidName("tensor name", name, "a tensor name must be valid unicode") from None
    return name


@dataclass
class StagedTensor:
    """A tensor written to the store and waiting for a commit."""

    entry: TensorEntry


def prepare(weights: Mapping[str, Any]) -> dict[str, np.ndarray[Any, Any]]:
    """Validate every name and value before anything is written: bad input stores nothing."""
    if not isinstance(weights, Mapping):
        raise InvalidValue(
            f"stage_weights takes a mapping of name -> array, not {type(weights).__name__}"
        )
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for name, value in weights.items():
        arrays[check_tensor_name(name)] = to_numpy(value, name)
    return arrays


def stage_tensors(
    store: ChunkStore,
    arrays: Mapping[str, np.ndarray[Any, Any]],
    parents: Mapping[str, TensorEntry | None],
    progress: Callable[[int], None] | None = None,
) -> dict[str, StagedTensor]:
    """Write the chunks of many tensors (new ones only, each encoded once, as a delta on
    its group's whole chunk where that pays: :func:`_write_chunk`); return the staged
    tensors. ``parents``: each tensor's entry in the parent commit, whose chunks the new
    ones replace.

    Every chunk of every tensor goes through one bounded pipeline on the pool: a model's
    tensors are mostly one chunk each, so a pipeline per tensor would keep one worker busy.
    """
    tasks: list[tuple[int, Callable[[], str]]] = []
    layout: list[tuple[str, DType, np.ndarray[Any, Any], int]] = []
    for name, array in arrays.items():
        dtype = dtype_of(array)
        flat = array.reshape(-1).view(np.uint8)
        spans = list(chunk_spans(flat.size, dtype.itemsize, CHUNK_BYTES))
        parent = parents.get(name)
        bases: list[str | None] = [None] * len(spans)
        if parent is not None and parent.dtype == dtype.name and parent.chunk_bytes == CHUNK_BYTES:
            for i, old in enumerate(parent.chunks[: len(spans)]):
                bases[i] = old
        tasks += [
            (span.stop - span.start, _task(store, flat[span], dtype, base, progress))
            for span, base in zip(spans, bases)
        ]
        layout.append((name, dtype, array, len(spans)))
    ids = (cid for batch in _bounded(_batched(tasks), window=8) for cid in batch)
    staged: dict[str, StagedTensor] = {}
    for name, _dtype, array, count in layout:
        chunks = [next(ids) for _ in range(count)]
        entry = TensorEntry(_dtype.name, tuple(array.shape), array.nbytes, CHUNK_BYTES, chunks)
        staged[name] = StagedTensor(entry)
    return staged


def _task(
    store: ChunkStore,
    raw: np.ndarray[Any, Any],
    dtype: DType,
    base: str | None,
    progress: Callable[[int], None] | None,
) -> Callable[[], str]:
    def run() -> str:
        cid = _write_chunk(store, raw, dtype, base)
        if progress is not None:
            progress(raw.size)
        return cid

    return run


def _write_chunk(
    store: ChunkStore, raw: np.ndarray[Any, Any], dtype: DType, base: str | None
) -> str:
    """Store one chunk, encoded once: as a delta on the whole chunk that ``base`` (the same
    chunk of the same tensor in the parent commit) is or is based on, while that group of
    versions is short and its deltas small (:func:`_group_base`); else whole, starting a
    new group. So every version decodes in at most two steps, its base and its delta."""
    cid = chunk_id_of(raw)
    if store.has(cid):
        store.touch(cid)  # an age-based gc must not take it before the commit names it
        return cid
    group = _group_base(store, base, raw.size, dtype) if base is not None and base != cid else None
    if group is not None:
        key, place, key_size = group
        parts = encode_delta_parts(raw, store.base_raw(key), dtype, key, place)
        # A delta larger than its base's whole encoding (the tensor was replaced, not
        # trained) is not worth a group: this chunk starts one (the one case encoded twice).
        if sum(len(p) for p in parts) < key_size:
            if store.put_parts(cid, parts):  # (not if another writer stored it first)
                _groups.note(store, cid, (key, place, key_size), raw.size, dtype)
            return cid
    parts = encode_standalone_parts(raw, dtype)
    if store.put_parts(cid, parts):
        _groups.note(store, cid, (cid, 0, sum(len(p) for p in parts)), raw.size, dtype)
    if len(parts[1]) < raw.size:  # a compressible whole chunk is worth caching as a base
        view = raw.view()
        view.flags.writeable = False
        base_cache.put(cid, np.array(view))
    return cid


class _Groups:
    """The group of each chunk this process wrote (its group's whole chunk, its place, that
    chunk's stored size), so the next commit finds each chunk's group without reading the
    headers of its parent and base from storage (about a tenth of a small commit's CPU).

    A chunk's encoding never changes once written (ids are content; only the legacy
    :meth:`ChunkStore.put_delta` re-encodes, and no writer calls it), so what a writer
    noted stays true; at worst a stale entry would make one delta on a delta, which still
    decodes (chains are followed), one step slower."""

    LIMIT = 50_000  # entries per store (about 20 MB at most), the oldest dropped first

    def __init__(self) -> None:
        import weakref

        # per store object: what one store wrote says nothing about another's encodings
        self._known: weakref.WeakKeyDictionary[
            ChunkStore, dict[tuple[str, int, str], tuple[str, int, int]]
        ] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def note(
        self, store: ChunkStore, cid: str, group: tuple[str, int, int], size: int, dtype: DType
    ) -> None:
        with self._lock:
            known = self._known.get(store)
            if known is None:
                known = self._known[store] = {}
            while len(known) >= self.LIMIT:  # the oldest first: a commit needs the newest
                del known[next(iter(known))]
            known[(cid, size, dtype.name)] = group

    def get(
        self, store: ChunkStore, cid: str, size: int, dtype: DType
    ) -> tuple[str, int, int] | None:
        with self._lock:
            known = self._known.get(store)
            return None if known is None else known.get((cid, size, dtype.name))


_groups = _Groups()


def _group_base(
    store: ChunkStore, base: str, size: int, dtype: DType
) -> tuple[str, int, int] | None:
    """For a chunk replacing ``base``: (the whole chunk of its group, the new version's place
    in the group, that chunk's stored size), or None to start a new group.

    A group ends after :data:`GROUP_LIMIT` versions (deltas on one base grow as the weights
    drift away from it); :func:`_write_chunk` also starts a new group when a delta would be
    larger than the base's whole encoding. A base from an older store that is itself a
    delta (a backward chain) starts a new group too, so no chain is ever longer than one."""
    known = _groups.get(store, base, size, dtype)
    if known is not None and store.has(known[0]):
        key, place, key_size = known
        return (key, place + 1, key_size) if place + 1 < GROUP_LIMIT else None
    try:
        head = store.read_header(base)
        # The same bytes may be stored under another dtype's header (ids are content):
        # a group keeps one dtype, so its deltas decode with the integer map they were made with.
        if head.raw_len != size or head.dtype != dtype.name:
            return None
        if not head.is_delta:
            return base, 1, store.encoded_size(base)
        assert head.base is not None
        key = head.base
        key_head = store.read_header(key)
        place = head.chain + 1
        if key_head.is_delta or key_head.dtype != dtype.name:
            return None
        if not 1 < place < GROUP_LIMIT:
            return None
        return key, place, store.encoded_size(key)
    except ChunkNotFound:
        return None


# -- reading -----------------------------------------------------------------------------------


_ALIGN = 64  # each tensor in a checkout starts on a cache line


def _what(name: str, commit: str | None) -> str:
    return f"tensor {name!r}" + (f" in commit {commit}" if commit else "")


def read_tensors(
    store: ChunkStore, manifest: Manifest, names: Iterable[str], commit: str | None = None
) -> dict[str, np.ndarray[Any, Any]]:
    """Decode tensors into new numpy arrays, every chunk verified against its id.

    The arrays are views into one buffer (each 64-byte aligned, :func:`_slab`), freed when
    the last of them is.
    """
    names = list(names)
    entries = [manifest.tensors[name] for name in names]
    offsets = [0]
    for entry in entries:
        offsets.append(offsets[-1] + -(-entry.nbytes // _ALIGN) * _ALIGN)
    slab = _slab(offsets[-1])
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    tasks: list[tuple[int, Callable[[], None]]] = []
    for name, entry, offset in zip(names, entries, offsets):
        flat = slab[offset : offset + entry.nbytes]
        array = flat.view(dtype_by_name(entry.dtype).numpy).reshape(entry.shape)
        what = _what(name, commit)
        for cid, span in zip(entry.chunks, entry.spans()):
            tasks.append((span.stop - span.start, _decode_task(store, cid, flat[span], what)))
        arrays[name] = array
    for _ in _bounded(_batched(tasks), window=8):
        pass
    return arrays


SLAB_MAP_MIN = 256 << 20
"""Checkouts this large get their buffer from an anonymous mapping of their own."""


def _slab(nbytes: int) -> np.ndarray[Any, Any]:
    """One buffer for a checkout's arrays. numpy asks the kernel for transparent huge pages
    for every large array: fewer page faults, which made checkouts of 43 and 91 MB
    faster. A checkout larger than :data:`SLAB_MAP_MIN` is an anonymous mapping instead,
    which the kernel backs as its THP policy says, as it does ``load_file``'s buffer. On a
    VM that hands free memory back to its host, a gigabyte of fresh huge pages must come
    back from the host first: a 1 GiB checkout spent a third of its CPU clearing them
    (1.65-2.51 s against 1.08-1.23 s with the mapping; measured in docs/architecture.md).
    The mapping is private (a forked child writing to it changes nothing here) and is
    unmapped when the last array using it is freed."""
    import mmap

    private = getattr(mmap, "MAP_PRIVATE", None)  # (not on Windows)
    if nbytes < SLAB_MAP_MIN or private is None:
        return np.empty(nbytes, dtype=np.uint8)
    return np.frombuffer(mmap.mmap(-1, nbytes, flags=private), dtype=np.uint8)


def _decode_task(
    store: ChunkStore, cid: str, out: np.ndarray[Any, Any], what: str
) -> Callable[[], None]:
    return lambda: store.get_into(cid, out, what)


def iter_tensor_chunks(
    store: ChunkStore, manifest: Manifest, commit: str | None = None, window: int = 6
) -> Iterator[np.ndarray[Any, Any]]:
    """Every tensor's raw bytes in manifest order, one decoded chunk at a time, decoded
    ahead on the pool into a few reused buffers (for streaming export)."""
    jobs = [
        (cid, span.stop - span.start, _what(name, commit))
        for name, entry in manifest.tensors.items()
        for cid, span in zip(entry.chunks, entry.spans())
    ]
    free: list[np.ndarray[Any, Any]] = [
        np.empty(CHUNK_BYTES, dtype=np.uint8) for _ in range(window + 1)
    ]
    buffers: dict[int, np.ndarray[Any, Any]] = {}

    def decode(i: int, cid: str, size: int, what: str) -> np.ndarray[Any, Any]:
        buf = buffers[i]
        view = buf[:size] if size <= buf.size else np.empty(size, dtype=np.uint8)
        store.get_into(cid, view, what)
        return view

    pending: list[tuple[int, Future[np.ndarray[Any, Any]]]] = []
    executor = pool()
    for i, (cid, size, what) in enumerate(jobs):
        buffers[i] = free.pop()
        pending.append((i, executor.submit(decode, i, cid, size, what)))
        if len(pending) >= window:
            j, fut = pending.pop(0)
            yield fut.result()
            free.append(buffers.pop(j))
    for j, fut in pending:
        yield fut.result()
        free.append(buffers.pop(j))


def write_safetensors(
    out: IO[bytes],
    store: ChunkStore,
    manifest: Manifest,
    metadata: Mapping[str, str],
    commit: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Stream a safetensors file: header, then every tensor's bytes chunk by chunk."""
    import json

    header: dict[str, Any] = {"__metadata__": dict(metadata)}
    offset = 0
    for name, entry in manifest.tensors.items():
        header[name] = {
            "dtype": entry.dtype,
            "shape": list(entry.shape),
            "data_offsets": [offset, offset + entry.nbytes],
        }
        offset += entry.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # data starts 8-byte aligned
    out.write(len(text).to_bytes(8, "little"))
    out.write(text)
    written = 0
    for block in iter_tensor_chunks(store, manifest, commit):
        out.write(block.data)
        written += block.size
        if progress is not None:
            progress(block.size)
    return 8 + len(text) + written


def verify_chunk(store: ChunkStore, chunk_id: str) -> str | None:
    """Decode one chunk and its bases; return what is wrong, or None if it is sound."""
    from ..errors import StoreCorrupted

    try:
        store.verify(chunk_id)
    except (ChecksumMismatch, StoreCorrupted) as exc:
        return str(exc)
    return None
