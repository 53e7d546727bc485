"""Chunks on a remote: another :class:`~coralx.store.base.ChunkStore`, over a transport.

Keys are ``chunks/<2 hex>/<62 hex>`` (the layout of ``.coralx/chunks``), built only from
checked chunk ids. The same contract suite runs against it as against the disk and memory
stores (tests/test_chunk_store.py), on a real S3 server.

>>> store = ObjectChunkStore(open_transport("s3://bucket/project", endpoint_url=...))
>>> store.put(raw, dtype)
"""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import ChunkNotFound
from ..ids import ChunkId, check_chunk_id, is_hex
from ..store.base import ChunkStore
from .transport import Transport, key

__all__ = ["ObjectChunkStore", "chunk_key"]

PREFIX = "chunks"


def chunk_key(chunk_id: str) -> str:
    cid = check_chunk_id(chunk_id)
    return key(PREFIX, cid[:2], cid[2:])


class ObjectChunkStore(ChunkStore):
    """Encoded chunks as objects of a :class:`~coralx.remote.transport.Transport`."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def has(self, chunk_id: str) -> bool:
        return self.transport.head(chunk_key(chunk_id)) is not None

    def get_raw_encoded(self, chunk_id: str) -> bytes:
        data = self.transport.get(chunk_key(chunk_id))
        if data is None:
            raise ChunkNotFound(chunk_id)
        return data

    def put_encoded(self, chunk_id: str, data: bytes, *, replace: bool = False) -> bool:
        k = chunk_key(chunk_id)
        if not replace and self.transport.head(k) is not None:
            return False
        self.transport.put(k, bytes(data))
        return True

    def put_new(self, chunk_id: str, data: bytes) -> bool:
        """Write encoded bytes only if the remote has no object for the chunk (a conditional
        write, so another writer's encoding is never replaced); False if it has one."""
        return self.transport.put_if(chunk_key(chunk_id), data, None)

    def delete(self, chunk_id: str) -> bool:
        return self.transport.delete(chunk_key(chunk_id))

    def iter_ids(self) -> Iterator[ChunkId]:
        for item in self.transport.list(PREFIX + "/"):
            parts = item.key.split("/")
            cid = "".join(parts[-2:]) if len(parts) >= 3 else ""
            if len(cid) == 64 and is_hex(cid):
                yield ChunkId(cid)

    def encoded_size(self, chunk_id: str) -> int:
        size = self.transport.head(chunk_key(chunk_id))
        if size is None:
            raise ChunkNotFound(chunk_id)
        return size

    def listed(self, prefixes: set[str] | None = None) -> dict[str, int]:
        """chunk id -> stored size for every chunk (or those under the given 2-hex
        prefixes): one listing instead of a request per chunk."""
        out: dict[str, int] = {}
        wanted = sorted(prefixes) if prefixes is not None else [""]
        for pre in wanted:
            for item in self.transport.list(f"{PREFIX}/{pre}"):
                parts = item.key.split("/")
                cid = "".join(parts[-2:]) if len(parts) >= 3 else ""
                if len(cid) == 64 and is_hex(cid):
                    out[cid] = item.size
        return out
