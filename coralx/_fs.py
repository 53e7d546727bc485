"""Atomic writes and advisory locks.

Every file coralx writes goes through :func:`atomic_write` or :func:`atomic_writer`: the data
lands in a temporary file in the destination's folder, is fsync'd, renamed over the destination
with :func:`os.replace`, and the folder is fsync'd so the rename itself survives a power cut.
A crash at any point leaves either the old file or the new one, never a torn one, and the
temporary file is removed on failure.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal, overload

from .errors import LockTimeout, OutputInsideStore

__all__ = [
    "STORE_DIR",
    "FileLock",
    "atomic_write",
    "atomic_write_many",
    "atomic_writer",
    "check_output_path",
    "fsync_dir",
    "fsync_many",
    "fsync_path",
    "name_os_error",
    "sync_together",
    "sync_whole_fs",
    "syncfs_trusted",
    "temp_name",
    "temp_writer_alive",
    "write_new_file",
]

STORE_DIR = ".coralx"
STORE_CONFIG = "config.toml"  # what makes a .coralx folder a store (see repository.py)

TEMP_PREFIX = ".tmp-"


_temp_token: tuple[int, str] = (-1, "")
_temp_counter = itertools.count()


def _temp_suffix() -> str:
    # The writer's host tag and pid (so a dead writer's leftovers are known for what they are,
    # see temp_writer_alive), then a random token drawn once per process (pids repeat across
    # machines sharing a store) and a counter: unique without asking the kernel for random
    # bytes at every write.
    global _temp_token
    pid = os.getpid()
    if _temp_token[0] != pid:  # first use, or a forked child
        from .identity import host_tag

        _temp_token = (pid, f"{host_tag()}.{pid}.{secrets.token_hex(4)}")
    return f"{_temp_token[1]}{next(_temp_counter):x}"


def check_output_path(
    path: str | os.PathLike[str], store: str | os.PathLike[str] | None = None
) -> Path:
    """``path`` as given, once it is known not to lie inside a coralx store: neither inside
    ``store`` nor inside any ``.coralx`` folder that is a store, with symbolic links followed (the
    folder a link points into is where the bytes would land). Every command and API that
    writes a file the user names calls this first: the store's own files are never a target.

    >>> check_output_path("model.safetensors", repo.path)
    PosixPath('model.safetensors')
    >>> check_output_path(".coralx/HEAD")
    Traceback (most recent call last):
    coralx.errors.OutputInsideStore: refusing to write .coralx/HEAD: ...
    """
    given = Path(path)
    resolved = Path(os.path.realpath(given))
    stores = [Path(os.path.realpath(store))] if store is not None else []
    for folder in (resolved, *resolved.parents):
        if folder.name == STORE_DIR and (folder / STORE_CONFIG).is_file():
            stores.append(folder)
    for root in stores:
        if resolved == root or resolved.is_relative_to(root):
            raise OutputInsideStore(str(given), str(root))
    return given


def temp_writer_alive(name: str) -> bool:
    """Whether the process that made temp file ``name`` (see :func:`temp_name`) may still be
    writing it: False only for a writer on this machine whose pid is gone, so that its
    leftovers can be removed at once, not an hour later."""
    from .identity import host_tag, pid_alive

    parts = name.rsplit(".", 3)
    if len(parts) < 4 or parts[-3] != host_tag():
        return True  # an older name, or another machine's writer: left to the age rule
    try:
        pid = int(parts[-2])
    except ValueError:
        return True
    return pid_alive(pid)


def name_os_error(exc: BaseException, path: str | os.PathLike[str]) -> None:
    """Give an ``OSError`` raised by a write on an open file (which names no file: ENOSPC from
    ``write``, EIO from ``fsync``) the path it was about, so that the one line the CLI prints
    says which file could not be written."""
    if isinstance(exc, OSError) and exc.filename is None:
        exc.filename = os.fspath(path)


def temp_name(dest: Path) -> Path:
    """A unique temporary path beside ``dest`` (same folder, so a rename is atomic)."""
    return Path(temp_path(os.fspath(dest)))


def temp_path(dest: str) -> str:
    """:func:`temp_name` for a path given as a string (the chunk store's hot path)."""
    folder, name = os.path.split(dest)
    return os.path.join(folder, f"{TEMP_PREFIX}{name}.{_temp_suffix()}")


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a folder's entries (a rename, a new file) durable; an error names the folder."""
    fsync_path(path)


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Make a file (or a folder) durable; an error names the path.

    In one C call where coralx's compiled library is built (``cx_fsync_one``): the chunk
    store's I/O threads fsync every chunk file and folder of a commit or a pull, and each
    open, fsync and close in Python takes the GIL back from the threads encoding or
    decoding beside them."""
    from .store import kernels

    if kernels.fsync_one(os.fspath(path)):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except BaseException as exc:
        name_os_error(exc, path)
        raise
    finally:
        os.close(fd)


OTHERS_DIRTY_LIMIT = 64 << 20
"""Unwritten data of other processes (the kernel's Dirty and Writeback pages, less the
caller's own) above which :func:`sync_whole_fs` declines: a syncfs would wait for it."""


def syncfs_trusted(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` is on a local file system (ext4, XFS, Btrfs, tmpfs) where one
    syncfs makes every file written there durable, as an fsync does one file. False on
    other file systems (network and FUSE ones, whose syncfs may not reach the server),
    where coralx's compiled library is not built, and with ``CORALX_SYNCFS=0``."""
    if os.environ.get("CORALX_SYNCFS") == "0":
        return False
    from .store import kernels

    return kernels.syncfs_trusted(os.fspath(folder))


def _unwritten_bytes() -> int:
    """The kernel's dirty and under-writeback pages, from /proc/meminfo (0 elsewhere)."""
    try:
        with open("/proc/meminfo", "rb") as f:
            text = f.read()
    except OSError:
        return 0
    total = 0
    for line in text.splitlines():
        if line.startswith((b"Dirty:", b"Writeback:")):
            total += int(line.split()[1]) * 1024
    return total


def sync_whole_fs(folder: str | os.PathLike[str], own_bytes: int = 0) -> bool:
    """Make everything written to ``folder``'s file system durable with one syncfs, in
    place of an fsync per file and per folder (a commit's chunk files took about two
    hundred, each a flush of the device's cache). Declines (returns False, having done
    nothing) where :func:`syncfs_trusted` says no, or when other processes have more than
    :data:`OTHERS_DIRTY_LIMIT` unwritten, which the syncfs would wait for: then the caller
    fsyncs its own files. ``own_bytes``: what the caller wrote and has not synced. An error
    names the folder."""
    if not syncfs_trusted(folder):
        return False
    if _unwritten_bytes() - own_bytes > OTHERS_DIRTY_LIMIT:
        return False
    from .store import kernels

    kernels.syncfs(os.fspath(folder))
    return True


def sync_together(paths: list[str] | list[Path]) -> bool:
    """Make every file and folder in ``paths`` durable with one :func:`sync_whole_fs`, when
    all of them are on one file system (their folders are stat'd, a file shares its
    folder's); False, having done nothing, when they are not, when one of their folders is
    gone, or when :func:`sync_whole_fs` declines."""
    names = [os.fspath(p) for p in paths]
    folders = {os.path.dirname(name) or "." for name in names}
    folders.update(folders.intersection(names))  # folders that are paths themselves
    devices = set()
    try:
        for folder in folders:
            devices.add(os.stat(folder).st_dev)
    except OSError:
        return False
    return len(devices) == 1 and sync_whole_fs(next(iter(folders)))


def fsync_many(paths: list[str] | list[Path], workers: int = 16) -> None:
    """Make many files (or folders) durable at once: with one syncfs where they share a
    file system that honours it (:func:`sync_together`), else each fsync'd, side by side on
    ``workers`` threads, so the file system joins the flushes into few journal commits.
    Raises the first error."""
    from concurrent.futures import ThreadPoolExecutor

    if len(paths) <= 1:
        for path in paths:
            fsync_path(path)
        return
    if sync_together(paths):
        return
    from .store import kernels

    kernels.available()  # imported and loaded here, not first on a pool thread (a fork then)
    with ThreadPoolExecutor(min(workers, len(paths)), thread_name_prefix="coralx-fsync") as io:
        list(io.map(fsync_path, paths))


@overload
def atomic_writer(
    dest: str | os.PathLike[str],
    mode: Literal["wb"] = "wb",
    *,
    fsync: bool = True,
    readonly: bool = False,
) -> contextlib.AbstractContextManager[IO[bytes]]: ...


@overload
def atomic_writer(
    dest: str | os.PathLike[str],
    mode: Literal["w"],
    *,
    fsync: bool = True,
    readonly: bool = False,
) -> contextlib.AbstractContextManager[IO[str]]: ...


def atomic_writer(
    dest: str | os.PathLike[str],
    mode: str = "wb",
    *,
    fsync: bool = True,
    readonly: bool = False,
) -> contextlib.AbstractContextManager[IO[bytes]] | contextlib.AbstractContextManager[IO[str]]:
    """Open a temporary file that replaces ``dest`` atomically when the block ends cleanly.

    >>> with atomic_writer(path, "w") as f:
    ...     f.write("all or nothing")

    With ``readonly=True`` the file is made read-only (0o444) before it is published, as
    content-addressed objects are.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_writer writes whole files: mode 'wb' or 'w', not {mode!r}")
    return _atomic_writer(Path(dest), mode, fsync, readonly)


@contextlib.contextmanager
def _atomic_writer(dest: Path, mode: str, fsync: bool, readonly: bool) -> Iterator[IO[Any]]:
    tmp = temp_name(dest)
    encoding = "utf-8" if mode == "w" else None
    f = open(tmp, mode, encoding=encoding)  # noqa: SIM115 - closed below on every path
    try:
        yield f
        f.flush()
        if fsync:
            os.fsync(f.fileno())
        f.close()
        if readonly:
            os.chmod(tmp, 0o444)
        os.replace(tmp, dest)
    except BaseException as exc:
        name_os_error(exc, dest)
        with contextlib.suppress(OSError):
            f.close()  # may fail again (ENOSPC on the last flush): the first error is reported
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_dir(dest.parent)


def atomic_write(
    dest: str | os.PathLike[str],
    data: bytes | str,
    *,
    fsync: bool = True,
    readonly: bool = False,
) -> os.stat_result:
    """Write ``data`` to ``dest`` atomically (see :func:`atomic_writer`); returns the status
    of the file written (its inode, size and mtime: those of ``dest`` from now on).

    Written with plain system calls (one open, one write, one rename): this is the path of
    small files written often, such as experiment records.
    """
    path = os.fspath(dest)
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f"{TEMP_PREFIX}{name}.{_temp_suffix()}")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
            if readonly:
                os.fchmod(fd, 0o444)
            if fsync:
                os.fsync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        name_os_error(exc, path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_dir(Path(folder or "."))
    return st


def write_new_file(
    path: str | os.PathLike[str], data: Any, mode: int = 0o644, writeback: bool = False
) -> None:
    """Create ``path`` (it must not exist) holding ``data`` (any buffer, written straight
    from it), not fsync'd: the caller makes it durable, often many files at once (with
    ``writeback``, the disk starts writing it at once, for a syncfs later to wait on)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if writeback:
            from .store import kernels

            kernels.start_writeback(fd)
    finally:
        os.close(fd)


def atomic_write_many(files: list[tuple[Path, bytes]], workers: int = 16) -> None:
    """:func:`atomic_write` for many files at once: each goes to a temporary file beside it,
    all are made durable at once (:func:`fsync_many`), then each is renamed into place, and
    the folders are made durable. Every file on its own is atomic (a crash leaves its old
    content or its new); two thousand records land in a fraction of the time that one
    ``atomic_write`` after another takes (a file fsync and a folder fsync each)."""
    temps: list[tuple[str, str]] = []
    try:
        for dest, data in files:
            path = os.fspath(dest)
            folder, name = os.path.split(path)
            tmp = os.path.join(folder, f"{TEMP_PREFIX}{name}.{_temp_suffix()}")
            temps.append((tmp, path))
            write_new_file(tmp, data)
        fsync_many([tmp for tmp, _ in temps], workers)
        for tmp, path in temps:
            os.replace(tmp, path)
    except BaseException as exc:
        if temps:
            name_os_error(exc, temps[-1][1])
        for tmp, _ in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    fsync_many(sorted({os.path.dirname(path) or "." for _, path in temps}), workers)


class FileLock:
    """An advisory, exclusive lock on a file, released when the block ends.

    ``flock`` locks belong to the open file, so two ``FileLock`` objects on one path exclude
    each other even inside one process, and the kernel drops the lock if the holder dies, so a
    crashed process never leaves a lock behind. On NFS, Linux maps ``flock`` onto the server's
    POSIX locks, so the lock also holds across machines sharing the store.

    >>> with FileLock(store / "refs.lock", timeout=10):
    ...     ...  # one process at a time
    """

    def __init__(
        self, path: str | os.PathLike[str], timeout: float = 60.0, shared: bool = False
    ) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.shared = shared
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        op = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, op | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockTimeout(str(self.path), self.timeout) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
