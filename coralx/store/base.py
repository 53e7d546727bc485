"""The chunk store interface: a small abstract core, and everything else written once on it.

A chunk store maps a :data:`~coralx.ids.ChunkId` (the BLAKE3 of a chunk's raw bytes) to the
chunk's *encoded* bytes. Implementations (:class:`~coralx.store.disk.DiskChunkStore`,
:class:`~coralx.store.memory.MemoryChunkStore`) only store and fetch bytes; encoding,
following delta chains, caching and verifying every read against its id live here.

>>> store = MemoryChunkStore()
>>> chunk_id, written = store.put(raw_bytes, dtype)
>>> store.get(chunk_id).tobytes() == raw_bytes
True
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import ChecksumMismatch, ChunkNotFound, StoreCorrupted
from ..ids import ChunkId, check_chunk_id
from .codecs import (
    HEADER_MAX,
    Header,
    decode_chain,
    decode_into,
    encode_delta_parts,
    encode_standalone,
    parse_header,
)
from .tensors import DType

__all__ = ["MAX_CHAIN", "ChunkStore", "DecodedCache", "base_cache", "chunk_id_of"]

MAX_CHAIN = 64
"""Decoding refuses chains longer than this: the writer makes deltas on whole chunks only
(older coralx versions made chains of at most 16), so a longer one means a damaged or cyclic
store."""


class DecodedCache:
    """Decoded chunks by id, bounded in bytes, least recently used first out; thread-safe.

    Ids are hashes of the content, so an entry is valid for every store, and entries are
    verified against their id before they are cached. Only delta bases go in: a run of
    versions on one base (a checkout of several versions, or the commits of a training run)
    decodes the base once.
    """

    def __init__(self, limit: int) -> None:
        import threading
        from collections import OrderedDict

        self.limit = limit
        self._items: OrderedDict[str, np.ndarray[Any, Any]] = OrderedDict()
        self._seen: set[str] = set()
        self._bytes = 0
        self._lock = threading.Lock()

    def seen_before(self, chunk_id: str) -> bool:
        """True if this id was asked for before (and note that it was): a base is cached
        the second time it is needed, so a single checkout caches nothing."""
        with self._lock:
            if chunk_id in self._seen:
                return True
            if len(self._seen) > 100_000:
                self._seen.clear()
            self._seen.add(chunk_id)
            return False

    def get(self, chunk_id: str) -> np.ndarray[Any, Any] | None:
        with self._lock:
            item = self._items.get(chunk_id)
            if item is not None:
                self._items.move_to_end(chunk_id)
            return item

    def put(self, chunk_id: str, raw: np.ndarray[Any, Any]) -> None:
        if raw.size > self.limit:
            return
        with self._lock:
            if chunk_id in self._items:
                return
            self._items[chunk_id] = raw
            self._bytes += raw.size
            while self._bytes > self.limit:
                _cid, old = self._items.popitem(last=False)
                self._bytes -= old.size

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._seen.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes


def _cache_limit() -> int:
    import os

    try:
        return int(float(os.environ.get("CORALX_BASE_CACHE_MB", "160")) * 2**20)
    except ValueError:
        return 160 << 20


base_cache = DecodedCache(_cache_limit())
"""The process's cache of decoded delta bases (``CORALX_BASE_CACHE_MB``, default 160)."""


def _reset_cache_in_child() -> None:
    import threading

    base_cache._lock = threading.Lock()  # the parent's may have been held at the fork


__import__("os").register_at_fork(after_in_child=_reset_cache_in_child)


def chunk_id_of(raw: Any) -> ChunkId:
    """The id of a raw chunk: BLAKE3 of its bytes, 64 hex digits."""
    import blake3

    return ChunkId(blake3.blake3(raw).hexdigest())


class ChunkStore(abc.ABC):
    """Content-addressed storage of encoded chunks (the abstract core is six methods)."""

    # -- the abstract core ----------------------------------------------------------------

    @abc.abstractmethod
    def has(self, chunk_id: str) -> bool:
        """True if the chunk is stored."""

    @abc.abstractmethod
    def get_raw_encoded(self, chunk_id: str) -> bytes:
        """The chunk's encoded bytes (header + payload); :class:`ChunkNotFound` if absent."""

    @abc.abstractmethod
    def put_encoded(self, chunk_id: str, data: bytes, *, replace: bool = False) -> bool:
        """Store encoded bytes under ``chunk_id`` atomically. An existing chunk is kept
        (return False) unless ``replace``, which swaps its encoding (same raw content)."""

    @abc.abstractmethod
    def delete(self, chunk_id: str) -> bool:
        """Remove a chunk; False if it was not there."""

    @abc.abstractmethod
    def iter_ids(self) -> Iterator[ChunkId]:
        """Every stored chunk id, in no particular order."""

    @abc.abstractmethod
    def encoded_size(self, chunk_id: str) -> int:
        """Bytes the chunk takes in storage."""

    # -- overridable details ----------------------------------------------------------------

    def put_parts(self, chunk_id: str, parts: Sequence[Any], *, replace: bool = False) -> bool:
        """:meth:`put_encoded` of the concatenated ``parts`` (a disk store writes them
        without joining them first)."""
        return self.put_encoded(chunk_id, b"".join(bytes(p) for p in parts), replace=replace)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group many writes: a store may defer their durability work to the end of the
        block and do it for all at once. Everything is durable when the block ends."""
        yield

    def read_encoded(self, chunk_id: str) -> Any:
        """The chunk's encoded bytes to decode at once, as any buffer (a store on disk maps
        large chunk files instead of copying them); :class:`ChunkNotFound` if absent."""
        return self.get_raw_encoded(chunk_id)

    def read_header(self, chunk_id: str) -> Header:
        """The chunk's header (a store on disk reads only the first bytes)."""
        return parse_header(self.get_raw_encoded(chunk_id)[:HEADER_MAX])

    def remove_dead_temp_files(self) -> int:
        """Remove what writers that died left behind; a store without temp files has none."""
        return 0

    def touch(self, chunk_id: str) -> None:  # noqa: B027 - optional hook, nothing to do here
        """Mark a chunk as just used, so an age-based gc spares it (disk stores)."""

    def age_seconds(self, chunk_id: str) -> float:
        """Seconds since the chunk was written or touched (infinite where not tracked)."""
        return float("inf")

    def another_handle(self) -> ChunkStore:
        """A second handle on the same stored chunks whose :meth:`batch` blocks do not mix
        with this one's (a background thread writes through its own). A store without
        batches may return itself."""
        return self

    def prune_temp_files(self, older_than: float, dry_run: bool = False) -> int:
        """Remove what writers that died left behind (temporary files) older than
        ``older_than`` seconds; return how many. Nothing to do for a store without them."""
        return 0

    # -- helpers written once ---------------------------------------------------------------

    def __contains__(self, chunk_id: object) -> bool:
        return isinstance(chunk_id, str) and self.has(chunk_id)

    def __len__(self) -> int:
        return sum(1 for _ in self.iter_ids())

    def stored_bytes(self) -> int:
        """Total encoded bytes of every chunk."""
        return sum(self.encoded_size(c) for c in self.iter_ids())

    def put(self, raw: Any, dtype: DType, chain: int = 0) -> tuple[ChunkId, bool]:
        """Store a raw chunk (standalone encoding); return its id and whether it was new."""
        chunk_id = chunk_id_of(raw)
        if self.has(chunk_id):
            return chunk_id, False
        return chunk_id, self.put_encoded(chunk_id, encode_standalone(raw, dtype, chain))

    def put_delta(self, chunk_id: str, raw: Any, base_id: str, base_raw: Any, dtype: DType) -> int:
        """Re-encode a stored chunk as a delta against ``base_id`` when that is smaller.

        Returns the bytes saved (0 when the current encoding was kept). The chunk's id and
        content do not change, only how it is stored; the swap is atomic.
        """
        parts = encode_delta_parts(raw, base_raw, dtype, base_id)
        size = sum(len(p) for p in parts)
        current = self.encoded_size(chunk_id)
        if size >= current:
            return 0
        self.put_parts(chunk_id, parts, replace=True)
        return current - size

    def get(self, chunk_id: str, what: str = "") -> np.ndarray[Any, Any]:
        """The chunk's raw bytes as a new uint8 array, verified against its id."""
        try:
            head = self.read_header(chunk_id)
        except StoreCorrupted as exc:
            raise _named(exc, chunk_id, what) from None
        out = np.empty(head.raw_len, dtype=np.uint8)
        self.get_into(chunk_id, out, what)
        return out

    def get_into(
        self, chunk_id: str, out: np.ndarray[Any, Any], what: str = "", cached: bool = True
    ) -> None:
        """Decode a chunk into ``out`` (uint8, its raw length), following delta bases, and
        verify it. :class:`ChecksumMismatch` (with ``what`` in its message) if it is damaged.

        A delta on a whole base (what the writer makes) takes the base from the process's
        cache of decoded bases (:data:`base_cache`) or decodes, verifies and caches it: a
        run of versions sharing one base decodes the base once. A longer chain (written by
        older versions of coralx) is decoded from its whole end towards the chunk, in ``out``.
        """
        try:
            hit = base_cache.get(chunk_id) if cached else None
            if hit is not None and hit.size == out.size:
                np.copyto(out, hit)  # verified when it was cached
                return
            blob = self.read_encoded(check_chunk_id(chunk_id))
            head = parse_header(blob)
            if not head.is_delta:
                decode_into(blob, out, None, head)
            else:
                assert head.base is not None
                base_blob = self.read_encoded(head.base)
                base_head = parse_header(base_blob)
                if base_head.is_delta:
                    blobs = self._chain_blobs(chunk_id)
                    decode_chain([(b, h) for _cid, b, h in reversed(blobs)], out)
                elif cached and (hit := self._cached_base(head.base, what)) is not None:
                    decode_into(blob, out, hit, head)
                else:
                    # The base decoded straight into ``out`` and the delta added in place: no
                    # second buffer. The base is not verified apart: the result's id covers it
                    # (a wrong base cannot give the right bytes); on a mismatch it is checked,
                    # so the error names the chunk that is damaged.
                    try:
                        decode_chain([(base_blob, base_head), (blob, head)], out)
                        self._verify(chunk_id, out, what)
                    except (ChecksumMismatch, StoreCorrupted):
                        self.verify(head.base, what)
                        raise
                    return
        except StoreCorrupted as exc:
            # A damaged header (or a missing base) is named like damaged payload: the chunk,
            # and the tensor and commit that use it.
            raise _named(exc, chunk_id, what) from None
        self._verify(chunk_id, out, what)

    def _cached_base(self, base_id: str, what: str) -> np.ndarray[Any, Any] | None:
        """A delta base from the cache; decoded into it the second time it is needed (one
        version's checkout decodes its bases in place, a run of versions caches them)."""
        hit = base_cache.get(base_id)
        if hit is None and base_cache.seen_before(base_id):
            hit = self.base_raw(base_id, what)
        return hit

    def base_raw(self, chunk_id: str, what: str = "", cached: bool = True) -> np.ndarray[Any, Any]:
        """The raw bytes of a whole chunk that deltas are based on, from the process's
        cache of decoded bases, else decoded, verified and cached (read-only). With
        ``cached=False`` the cache is neither read nor filled (fsck checks the files)."""
        hit = base_cache.get(chunk_id) if cached else None
        if hit is not None:
            return hit
        head = self.read_header(chunk_id)
        raw = np.empty(head.raw_len, dtype=np.uint8)
        self.get_into(chunk_id, raw, what, cached)
        if cached:
            raw.flags.writeable = False
            base_cache.put(chunk_id, raw)
        return raw

    def _chain_blobs(self, chunk_id: str) -> list[tuple[str, bytes, Header]]:
        """The encoded chunk and its bases, nearest first, ending with a whole chunk."""
        chain: list[tuple[str, bytes, Header]] = []
        cid: str = check_chunk_id(chunk_id)
        while True:
            blob = self.get_raw_encoded(cid)
            head = parse_header(blob)
            chain.append((cid, blob, head))
            if not head.is_delta:
                return chain
            assert head.base is not None
            if len(chain) > MAX_CHAIN or any(c == head.base for c, _, _ in chain):
                raise StoreCorrupted(f"chunk {chunk_id} has a delta chain that does not end")
            cid = head.base

    def verify(self, chunk_id: str, what: str = "") -> None:
        """Decode and check one chunk (and its bases) from storage, not from the cache of
        decoded bases; raise if anything is damaged."""
        head = self.read_header(chunk_id)
        self.get_into(chunk_id, np.empty(head.raw_len, dtype=np.uint8), what, cached=False)

    def base_chain(self, chunk_id: str) -> list[str]:
        """The ids of the bases a chunk's decoding goes through, nearest first."""
        chain: list[str] = []
        head = self.read_header(chunk_id)
        while head.is_delta and head.base is not None:
            if len(chain) >= MAX_CHAIN or head.base in chain:
                raise StoreCorrupted(f"chunk {chunk_id} has a delta chain that does not end")
            chain.append(head.base)
            head = self.read_header(head.base)
        return chain

    # -- internals --------------------------------------------------------------------------

    @staticmethod
    def _verify(chunk_id: str, raw: np.ndarray[Any, Any], what: str) -> None:
        got = chunk_id_of(raw)
        if got != chunk_id:
            label = f"chunk {chunk_id}" + (f" of {what}" if what else "")
            raise ChecksumMismatch(chunk_id, got, label)


def _named(exc: StoreCorrupted, chunk_id: str, what: str) -> StoreCorrupted:
    """``exc`` naming the chunk it is about and where it is used (``what``: a tensor and its
    commit), unless it does already."""
    text = str(exc)
    if chunk_id in text and (not what or what in text):
        return exc
    if isinstance(exc, ChunkNotFound) and exc.chunk_id == chunk_id:
        return ChunkNotFound(chunk_id, what)
    where = f" (used by {what})" if what else ""
    return StoreCorrupted(
        f"chunk {chunk_id}{where} is damaged: {text}; run `coralx fsck` to list everything affected"
    )
