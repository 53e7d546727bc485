"""Content-addressed blobs, ``.coralx/blobs/<2 hex>/<62 hex>``: artifacts, text and figures.

A blob's id is the BLAKE3 hash of its bytes, so storing the same bytes twice stores them once,
and every read is checked against the id.

>>> blobs = BlobStore(repo)
>>> blob_id = blobs.put(b"hello")
>>> blobs.get(blob_id)
b'hello'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import _fs
from ..errors import ArtifactNotFound, ChecksumMismatch
from ..ids import check_chunk_id

__all__ = ["BLOBS_DIR", "BlobStore"]

BLOBS_DIR = "blobs"


def _hash(data: bytes) -> str:
    from blake3 import blake3

    return str(blake3(data).hexdigest())


class BlobStore:
    """Blobs of a repository (or of a ``.coralx`` folder given as a path)."""

    def __init__(self, repo: Any) -> None:
        store = Path(repo) if isinstance(repo, str | os.PathLike) else Path(repo.path)
        self.root = store / BLOBS_DIR

    def path(self, blob_id: str) -> Path:
        """Where blob ``blob_id`` lives (the id is checked first: 64 lowercase hex digits)."""
        check_chunk_id(blob_id)
        return self.root / blob_id[:2] / blob_id[2:]

    def put(self, data: bytes) -> str:
        """Store ``data``; returns its id. Storing bytes that are already there is free."""
        blob_id = _hash(bytes(data))
        dest = self.path(blob_id)
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            _fs.atomic_write(dest, bytes(data), readonly=True)
        return blob_id

    def get(self, blob_id: str) -> bytes:
        """The bytes of blob ``blob_id``, verified against the id."""
        try:
            data = self.path(blob_id).read_bytes()
        except FileNotFoundError:
            raise ArtifactNotFound(f"no blob {blob_id} in {self.root}") from None
        got = _hash(data)
        if got != blob_id:
            raise ChecksumMismatch(blob_id, got, "blob")
        return data

    def exists(self, blob_id: str) -> bool:
        return self.path(blob_id).is_file()
