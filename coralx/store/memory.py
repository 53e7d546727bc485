"""A chunk store in a dict: for tests, and for callers that want no files."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from ..errors import ChunkNotFound
from ..ids import ChunkId, check_chunk_id
from .base import ChunkStore

__all__ = ["MemoryChunkStore"]


class MemoryChunkStore(ChunkStore):
    """Chunks in memory. Thread-safe; the same contract as the disk store.

    >>> store = MemoryChunkStore()
    """

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def has(self, chunk_id: str) -> bool:
        return check_chunk_id(chunk_id) in self._data

    def get_raw_encoded(self, chunk_id: str) -> bytes:
        try:
            return self._data[check_chunk_id(chunk_id)]
        except KeyError:
            raise ChunkNotFound(chunk_id) from None

    def put_encoded(self, chunk_id: str, data: bytes, *, replace: bool = False) -> bool:
        check_chunk_id(chunk_id)
        with self._lock:
            if chunk_id in self._data and not replace:
                return False
            self._data[chunk_id] = bytes(data)
            return True

    def delete(self, chunk_id: str) -> bool:
        with self._lock:
            return self._data.pop(check_chunk_id(chunk_id), None) is not None

    def iter_ids(self) -> Iterator[ChunkId]:
        with self._lock:
            ids = list(self._data)
        return (ChunkId(c) for c in ids)

    def encoded_size(self, chunk_id: str) -> int:
        return len(self.get_raw_encoded(chunk_id))
