"""Chunks as files: ``.coralx/chunks/ab/cdef...``, written atomically, read-only once written.

Each chunk is one file named by its id (two hex digits of folder, 62 of name). A write goes to
a temporary file in the same folder, is fsync'd, made read-only (0o444) and renamed into
place, so a reader or a crash sees the old file or the new one, never part of one. Ids are
validated before a path is built, so no string can reach outside the chunk folder.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .. import _fs
from .._pools import KeptPool
from ..errors import ChunkNotFound
from ..ids import ChunkId, check_chunk_id
from . import kernels
from .base import ChunkStore
from .codecs import HEADER_MAX, Header, parse_header

__all__ = ["DiskChunkStore"]

MAP_MIN = 256 << 10
"""Chunk files this large are mapped to be decoded (smaller ones cost less to copy than to
map and unmap)."""


class DiskChunkStore(ChunkStore):
    """Chunk files under ``root`` (``.coralx/chunks`` in a repository).

    >>> store = DiskChunkStore(repo.path / "chunks")
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        # The hot paths (a commit touches each chunk's file several times) build paths as
        # strings: pathlib's joins cost more than the system calls they name.
        self._root = os.fspath(self.root)
        # The open batch (shared by the worker threads writing for it) and its nesting depth.
        self._open_batch: _Batch | None = None
        self._batch_depth = 0
        self._batch_lock = threading.Lock()
        self._whole_fs: bool | None = None  # batches made durable by one syncfs (found once)

    def path(self, chunk_id: str) -> Path:
        """The file of a chunk (the id is checked first: 64 lowercase hex digits)."""
        return Path(self._file(chunk_id))

    def _file(self, chunk_id: str) -> str:
        cid = check_chunk_id(chunk_id)
        return f"{self._root}{os.sep}{cid[:2]}{os.sep}{cid[2:]}"

    def has(self, chunk_id: str) -> bool:
        dest = self._file(chunk_id)
        return os.path.isfile(dest) or self._pending(dest) is not None

    def _readable(self, chunk_id: str) -> str:
        dest = self._file(chunk_id)
        return self._pending(dest) or dest

    def get_raw_encoded(self, chunk_id: str) -> bytes:
        try:
            with open(self._readable(chunk_id), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise ChunkNotFound(chunk_id) from None

    def read_encoded(self, chunk_id: str) -> Any:
        """A chunk file of :data:`MAP_MIN` bytes or more is mapped, not copied: checking
        out a version reads each file once, and the copy into fresh memory cost about a
        tenth of a checkout's CPU (docs/architecture.md). Smaller files are read."""
        try:
            with open(self._readable(chunk_id), "rb", buffering=0) as f:
                size = os.fstat(f.fileno()).st_size
                if size < MAP_MIN:
                    return f.read()
                return mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            raise ChunkNotFound(chunk_id) from None

    def read_header(self, chunk_id: str) -> Header:
        try:
            with open(self._readable(chunk_id), "rb") as f:
                return parse_header(f.read(HEADER_MAX))
        except FileNotFoundError:
            raise ChunkNotFound(chunk_id) from None

    def put_encoded(self, chunk_id: str, data: bytes, *, replace: bool = False) -> bool:
        return self.put_parts(chunk_id, [data], replace=replace)

    def put_parts(self, chunk_id: str, parts: Sequence[Any], *, replace: bool = False) -> bool:
        """Write atomically: a temporary file beside the chunk, fsync'd, made read-only and
        renamed into place. Inside :meth:`batch`, the fsync and rename wait for the end of
        the batch, where they are done for all the batch's chunks at once."""
        dest = self._file(chunk_id)
        batch = self._open_batch
        if not replace and (os.path.isfile(dest) or (batch is not None and dest in batch.files)):
            return False
        folder = os.path.dirname(dest)
        tmp = _fs.temp_path(dest)
        try:
            with _create(tmp, folder) as f:
                for part in parts:
                    f.write(part)
                f.flush()
                if batch is None:
                    os.fsync(f.fileno())
                elif batch.whole_fs:
                    kernels.start_writeback(f.fileno())
            os.chmod(tmp, 0o444)
            if batch is None:
                os.replace(tmp, dest)
                _fs.fsync_dir(folder)
                return True
        except BaseException as exc:
            _fs.name_os_error(exc, dest)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        batch.add(dest, tmp, replace, sum(memoryview(part).nbytes for part in parts))
        return True

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Defer the durability work of every write in the block to its end: then all
        temporary files are made durable (one syncfs on a local file system that honours
        it, else an fsync each, side by side), new chunks are renamed into place and the
        renames made durable in turn (a second syncfs, else their folders' fsyncs), and only
        then are re-encoded chunks swapped in, so a delta never becomes visible before its
        base is durable. If the block fails, nothing is published."""
        with self._batch_lock:
            if self._open_batch is None:
                if self._whole_fs is None:
                    probe = self._root if os.path.isdir(self._root) else os.path.dirname(self._root)
                    if os.path.isdir(probe):
                        self._whole_fs = _fs.syncfs_trusted(probe)
                self._open_batch = _Batch(self._root if self._whole_fs else None)
            batch = self._open_batch
            self._batch_depth += 1
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            with self._batch_lock:
                self._batch_depth -= 1
                last = self._batch_depth == 0
                if last:
                    self._open_batch = None
            if last and failed:
                batch.discard()
        if last:
            batch.publish()

    def _pending(self, dest: str) -> str | None:
        """The temporary file of a chunk written in the open batch, not yet renamed."""
        batch = self._open_batch
        if batch is None:
            return None
        return batch.files.get(dest)

    def delete(self, chunk_id: str) -> bool:
        path = self._file(chunk_id)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        _fs.fsync_dir(os.path.dirname(path))
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
            return os.stat(self._readable(chunk_id)).st_size
        except FileNotFoundError:
            raise ChunkNotFound(chunk_id) from None

    def touch(self, chunk_id: str) -> None:
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.utime(self._file(chunk_id))

    def age_seconds(self, chunk_id: str) -> float:
        try:
            return time.time() - os.stat(self._file(chunk_id)).st_mtime
        except FileNotFoundError:
            return float("inf")

    def another_handle(self) -> DiskChunkStore:
        return DiskChunkStore(self.root)

    def prune_temp_files(self, older_than: float, dry_run: bool = False) -> int:
        removed = 0
        for tmp in list(self.iter_temp_files()):
            try:
                if time.time() - tmp.stat().st_mtime >= older_than:
                    if not dry_run:
                        tmp.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def iter_temp_files(self) -> Iterator[Path]:
        """Temporary files of writes in progress (or of writers that crashed)."""
        if not self.root.is_dir():
            return
        for folder in self.root.iterdir():
            if folder.is_dir():
                yield from folder.glob(f"{_fs.TEMP_PREFIX}*")

    def remove_dead_temp_files(self) -> int:
        """Remove the temporary files of writers on this machine that died (kill -9 during a
        commit or a re-encode); the files of live writers, or of other machines, are left to
        ``gc``'s age rule. Returns how many were removed."""
        removed = 0
        for tmp in list(self.iter_temp_files()):
            if not _fs.temp_writer_alive(tmp.name):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                    removed += 1
        return removed


IO_THREADS = 16
"""Threads that wait on the disk for batches (fsyncs, renames): they wait, not compute, so
many at once cost little."""

_io = KeptPool(lambda: IO_THREADS, "coralx-io")


def io_pool() -> ThreadPoolExecutor:
    """The process's I/O threads, made on first use and kept: a commit used to start and
    stop sixteen threads of its own, which cost more than some of its fsyncs."""
    return _io.get()


class _Batch:
    """Chunk files written inside :meth:`DiskChunkStore.batch`, not yet published.

    On a file system whose syncfs coralx trusts (``whole_fs``, the store's folder), each
    file's writeback starts as soon as it is written and :meth:`publish` makes them all
    durable with one syncfs, renames them into place, and makes the renames durable with a
    second. Elsewhere (or when other processes have much unwritten data, which a syncfs
    would wait for) each file's fsync starts on the I/O threads as soon as it is written, so
    the disk works while the workers compute the next chunks, and :meth:`publish` waits for
    them, renames, and fsyncs the new chunks' folders. Re-encoded chunks are swapped in last.
    """

    def __init__(self, whole_fs: str | None = None) -> None:
        self.files: dict[str, str] = {}  # destination -> temporary file
        self.replacing: set[str] = set()
        self.whole_fs = whole_fs
        self._syncs: dict[str, Future[None]] = {}  # temporary file -> its fsync
        self._bytes = 0  # written, not yet durable
        self._lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        return io_pool()

    def _start_fsync(self, tmp: str) -> Future[None]:
        try:
            return self._executor().submit(_fs.fsync_path, tmp)
        except RuntimeError:  # the interpreter is exiting: no new threads; fsync here
            done: Future[None] = Future()
            _fs.fsync_path(tmp)
            done.set_result(None)
            return done

    def add(self, dest: str, tmp: str, replace: bool, nbytes: int = 0) -> None:
        with self._lock:
            old = self.files.get(dest)
            self.files[dest] = tmp
            self._bytes += nbytes
            if replace:
                self.replacing.add(dest)
            if self.whole_fs is None:
                self._syncs[tmp] = self._start_fsync(tmp)
        if old is not None:
            with self._lock:
                stale = self._syncs.pop(old, None)
            if stale is not None:
                with contextlib.suppress(FileNotFoundError):
                    stale.result()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(old)

    def publish(self) -> None:
        try:
            if self.files:
                self._publish()
        finally:
            self._close()

    def _publish(self) -> None:
        io = self._executor()
        try:
            whole = self.whole_fs is not None and _fs.sync_whole_fs(self.whole_fs, self._bytes)
            if not whole:
                for tmp in self.files.values():
                    if tmp not in self._syncs:
                        self._syncs[tmp] = self._start_fsync(tmp)
            for fut in self._syncs.values():
                fut.result()
        except BaseException:
            self.discard()
            raise
        fresh = [d for d in self.files if d not in self.replacing]
        swaps = [d for d in self.files if d in self.replacing]
        # renames take journal locks and wait on a loaded disk: do them side by side
        _each(io, lambda dest: os.replace(self.files.pop(dest), dest), fresh)
        if fresh and not (whole and _fs.sync_whole_fs(self.whole_fs or "", 0)):
            _each(io, _fs.fsync_path, sorted({os.path.dirname(d) for d in fresh}))
        # A re-encoded chunk's bases are durable now. Its rename needs no folder fsync: if a
        # crash loses it, the folder still holds the chunk's previous encoding, also valid.
        _each(io, lambda dest: os.replace(self.files.pop(dest), dest), swaps)

    def discard(self) -> None:
        for fut in self._syncs.values():
            with contextlib.suppress(Exception):
                fut.result()
        for tmp in self.files.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self.files.clear()
        self._close()

    def _close(self) -> None:
        # Every fsync of the batch has been awaited (publish, discard): nothing of it is
        # left on the shared threads.
        self._syncs.clear()


def _each(io: ThreadPoolExecutor, work: Callable[[str], object], items: list[str]) -> None:
    """``work`` on every item, on the I/O threads (here when the interpreter is exiting:
    thread pools take no more work then)."""
    if _exiting():
        for item in items:
            work(item)
        return
    list(io.map(work, items))


def _exiting() -> bool:
    import concurrent.futures.thread as cft

    return bool(getattr(cft, "_shutdown", False))


def _create(tmp: str, folder: str) -> Any:
    """Open a new file for writing, making its folder first if it does not exist yet (the
    common case, an existing folder, costs no system call for it)."""
    try:
        return open(tmp, "wb")
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
        return open(tmp, "wb")
