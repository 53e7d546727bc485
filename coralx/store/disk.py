"""Chunks as files: ``.coralx/chunks/ab/cdef...``, written atomically, read-only once written.

Each chunk is one file named by its id (two hex digits of folder, 62 of name). A write goes to
a temporary file in the same folder, is fsync'd, made read-only (0o444) and renamed into
place, so a reader or a crash sees the old file or the new one, never part of one. Ids are
validated before a path is built, so no string can reach outside the chunk folder.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .. import _fs
from ..errors import ChunkNotFound
from ..ids import ChunkId, check_chunk_id
from .base import ChunkStore
from .codecs import HEADER_MAX, Header, parse_header

__all__ = ["DiskChunkStore"]


class DiskChunkStore(ChunkStore):
    """Chunk files under ``root`` (``.coralx/chunks`` in a repository).

    >>> store = DiskChunkStore(repo.path / "chunks")
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._pending_dirs: set[Path] = set()
        self._pending_lock = threading.Lock()

    def path(self, chunk_id: str) -> Path:
        """The file of a chunk (the id is checked first: 64 lowercase hex digits)."""
        cid = check_chunk_id(chunk_id)
        return self.root / cid[:2] / cid[2:]

    def has(self, chunk_id: str) -> bool:
        return self.path(chunk_id).is_file()

    def get_raw_encoded(self, chunk_id: str) -> bytes:
        try:
            with open(self.path(chunk_id), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise ChunkNotFound(chunk_id) from None

    def read_header(self, chunk_id: str) -> Header:
        try:
            with open(self.path(chunk_id), "rb") as f:
                return parse_header(f.read(HEADER_MAX))
        except FileNotFoundError:
            raise ChunkNotFound(chunk_id) from None

    def put_encoded(self, chunk_id: str, data: bytes, *, replace: bool = False) -> bool:
        return self.put_parts(chunk_id, [data], replace=replace)

    def put_parts(self, chunk_id: str, parts: Sequence[Any], *, replace: bool = False) -> bool:
        """Write atomically: a temporary file beside the chunk, fsync'd, made read-only and
        renamed into place. The folder's fsync (which makes the rename durable) is deferred
        to :meth:`sync`, once per folder for a whole batch of chunks."""
        dest = self.path(chunk_id)
        if not replace and dest.is_file():
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _fs.temp_name(dest)
        try:
            with open(tmp, "wb") as f:
                for part in parts:
                    f.write(part)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o444)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        with self._pending_lock:
            self._pending_dirs.add(dest.parent)
        return True

    def sync(self) -> None:
        with self._pending_lock:
            dirs, self._pending_dirs = self._pending_dirs, set()
        for folder in sorted(dirs):
            _fs.fsync_dir(folder)

    def delete(self, chunk_id: str) -> bool:
        path = self.path(chunk_id)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        with self._pending_lock:
            self._pending_dirs.add(path.parent)
        return True

    def iter_ids(self) -> Iterator[ChunkId]:
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if len(folder.name) != 2 or not folder.is_dir():
                continue
            with os.scandir(folder) as entries:
                names = [e.name for e in entries]
            for name in names:
                cid = folder.name + name
                if len(cid) == 64 and not name.startswith("."):
                    with contextlib.suppress(ValueError):
                        yield check_chunk_id(cid)

    def encoded_size(self, chunk_id: str) -> int:
        try:
            return self.path(chunk_id).stat().st_size
        except FileNotFoundError:
            raise ChunkNotFound(chunk_id) from None

    def touch(self, chunk_id: str) -> None:
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.utime(self.path(chunk_id))

    def age_seconds(self, chunk_id: str) -> float:
        try:
            return time.time() - self.path(chunk_id).stat().st_mtime
        except FileNotFoundError:
            return float("inf")

    def iter_temp_files(self) -> Iterator[Path]:
        """Temporary files of writes in progress (or of writers that crashed)."""
        if not self.root.is_dir():
            return
        for folder in self.root.iterdir():
            if folder.is_dir():
                yield from folder.glob(f"{_fs.TEMP_PREFIX}*")
