"""Writing tensors into chunks and reading them back: the weight engine.

Writing: a tensor's bytes are cut into fixed, element-aligned chunks; each is hashed (BLAKE3),
and if the store lacks it, encoded standalone and written. Delta chains are kept short and
point *backwards*: the newest version of a chunk is stored whole, and after the commit the
version it replaced (the same chunk of the same tensor in the parent commit) is re-encoded as
a delta against it (:func:`reencode_parents`). Checking out the newest weights, the common
case, decodes one chunk per chunk; an older version follows at most :data:`CHAIN_LIMIT`
deltas, because every ``CHAIN_LIMIT + 1``-th version is left whole.

Work is done in blocks (one chunk at a time per worker) on a small thread pool: numpy, zstd
and BLAKE3 release the GIL.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from ..errors import ChecksumMismatch, InvalidName, InvalidValue
from .base import ChunkStore, chunk_id_of
from .codecs import CODEC_DELTA, encode_standalone
from .manifest import Manifest, TensorEntry
from .tensors import CHUNK_BYTES, DType, chunk_spans, dtype_by_name, dtype_of, to_numpy

__all__ = [
    "CHAIN_LIMIT",
    "Rewrite",
    "StagedTensor",
    "check_tensor_name",
    "iter_tensor_chunks",
    "read_tensors",
    "reencode_parents",
    "stage_tensor",
]

CHAIN_LIMIT = 16
"""At most this many deltas are decoded to reach any version of a chunk (see the
benchmark numbers in docs/architecture.md for why 8)."""

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def pool() -> ThreadPoolExecutor:
    """The process's small worker pool (2-4 threads), created on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            workers = max(2, min(4, os.cpu_count() or 2))
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="coralx")
        return _pool


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


def check_tensor_name(name: object) -> str:
    """A tensor name is any non-empty string without NUL (a safetensors key)."""
    if not isinstance(name, str):
        raise InvalidName("tensor name", name, "tensor names are strings")
    if not name or "\x00" in name:
        raise InvalidName("tensor name", name, "a tensor name cannot be empty or contain NUL")
    if name == "__metadata__":
        raise InvalidName("tensor name", name, "safetensors reserves this key")
    return name


@dataclass(frozen=True)
class Rewrite:
    """After commit: re-encode chunk ``old`` (from the parent) as a delta against ``new``."""

    old: str
    new: str
    dtype: str


@dataclass
class StagedTensor:
    """A tensor written to the store and waiting for a commit."""

    entry: TensorEntry
    rewrites: list[Rewrite] = field(default_factory=list)
    source: np.ndarray[Any, Any] | None = None  # the staged array: spares decoding new chunks


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


def stage_tensor(
    store: ChunkStore, array: np.ndarray[Any, Any], parent: TensorEntry | None
) -> StagedTensor:
    """Write one tensor's chunks (new ones only) and plan the parent's re-encoding."""
    dtype = dtype_of(array)
    flat = array.reshape(-1).view(np.uint8)
    spans = list(chunk_spans(flat.size, dtype.itemsize, CHUNK_BYTES))
    bases: list[str | None] = [None] * len(spans)
    if parent is not None and parent.dtype == dtype.name and parent.chunk_bytes == CHUNK_BYTES:
        for i, old in enumerate(parent.chunks[: len(spans)]):
            bases[i] = old

    def task(span: slice, base: str | None) -> Callable[[], tuple[str, str | None]]:
        return lambda: _write_chunk(store, flat[span], dtype, base)

    tasks = [task(span, base) for span, base in zip(spans, bases)]
    ids: list[str] = []
    rewrites: list[Rewrite] = []
    for (cid, rewrite_base), base in zip(_bounded(tasks, window=8), bases):
        ids.append(cid)
        if rewrite_base is not None and base is not None:
            rewrites.append(Rewrite(base, cid, dtype.name))
    entry = TensorEntry(dtype.name, tuple(array.shape), flat.size, CHUNK_BYTES, ids)
    return StagedTensor(entry, rewrites, array)


def _write_chunk(
    store: ChunkStore, raw: np.ndarray[Any, Any], dtype: DType, base: str | None
) -> tuple[str, str | None]:
    """Store one chunk; return its id and, if the parent's chunk should become a delta
    against it, that chunk's id."""
    cid = chunk_id_of(raw)
    if store.has(cid):
        store.touch(cid)  # an age-based gc must not take it before the commit names it
        return cid, None
    chain = 0
    rewrite = None
    if base is not None and base != cid and store.has(base):
        head = store.read_header(base)
        if head.codec != CODEC_DELTA and head.raw_len == raw.size and head.chain < CHAIN_LIMIT:
            chain, rewrite = head.chain + 1, base
    store.put_encoded(cid, encode_standalone(raw, dtype, chain))
    return cid, rewrite


def reencode_parents(
    store: ChunkStore, rewrites: list[Rewrite], sources: Mapping[str, np.ndarray[Any, Any]]
) -> int:
    """Re-encode each parent chunk as a delta against the chunk that replaced it (when the
    delta is smaller). ``sources`` maps new chunk ids to their raw bytes where the caller
    still has them. Returns the bytes saved."""

    def one(rw: Rewrite) -> int:
        if not (store.has(rw.old) and store.has(rw.new)):
            return 0
        if store.read_header(rw.old).codec == CODEC_DELTA:
            return 0  # already a delta (another writer got here first)
        new_raw = sources.get(rw.new)
        if new_raw is None or chunk_id_of(new_raw) != rw.new:
            new_raw = store.get(rw.new)  # the array changed since staging: use the stored copy
        old_raw = store.get(rw.old)
        return store.put_delta(rw.old, old_raw, rw.new, new_raw, dtype_by_name(rw.dtype))

    def task(rw: Rewrite) -> Callable[[], int]:
        return lambda: one(rw)

    return sum(_bounded([task(rw) for rw in rewrites], window=4))


def chunk_sources(staged: Mapping[str, StagedTensor]) -> dict[str, np.ndarray[Any, Any]]:
    """New chunk id -> its raw bytes in the staged arrays (views, no copies)."""
    wanted = {rw.new for t in staged.values() for rw in t.rewrites}
    out: dict[str, np.ndarray[Any, Any]] = {}
    for tensor in staged.values():
        if tensor.source is None or not tensor.rewrites:
            continue
        flat = tensor.source.reshape(-1).view(np.uint8)
        for cid, span in zip(tensor.entry.chunks, tensor.entry.spans()):
            if cid in wanted:
                out[cid] = flat[span]
    return out


# -- reading -----------------------------------------------------------------------------------


def _what(name: str, commit: str | None) -> str:
    return f"tensor {name!r}" + (f" in commit {commit}" if commit else "")


def read_tensors(
    store: ChunkStore, manifest: Manifest, names: Iterable[str], commit: str | None = None
) -> dict[str, np.ndarray[Any, Any]]:
    """Decode tensors into new numpy arrays, every chunk verified against its id."""
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    tasks: list[Callable[[], None]] = []
    for name in names:
        entry = manifest.tensors[name]
        array = np.empty(entry.shape, dtype=dtype_by_name(entry.dtype).numpy)
        flat = array.reshape(-1).view(np.uint8)
        what = _what(name, commit)
        for cid, span in zip(entry.chunks, entry.spans()):
            tasks.append(_decode_task(store, cid, flat[span], what))
        arrays[name] = array
    for _ in _bounded(tasks, window=8):
        pass
    return arrays


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
