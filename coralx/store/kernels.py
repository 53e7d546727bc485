"""The byte-plane loops of ``_kernels.c``, loaded with ctypes, with numpy's code as the
fallback; :func:`fsync_paths` / :func:`fsync_one`, fsyncs in one call each (the
records' batches, the chunk store's files and folders); and :func:`syncfs` with
:func:`syncfs_trusted` and :func:`start_writeback`, a whole commit's chunk files made durable
at once.

The library is compiled at install (``hatch_build.py``). Where it is missing, or
``CORALX_NO_KERNELS=1`` is set, every function here returns False, having written nothing,
and the caller runs the numpy version of the same loop (``codecs.py``): the same bytes, more
slowly. ctypes releases the GIL during each call, so the pool's threads run side by side.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is not imported here: the records' syncer loads this module too
    import numpy as np

__all__ = [
    "available",
    "fsync_one",
    "fsync_paths",
    "join",
    "join_delta",
    "split",
    "split_delta",
    "start_writeback",
    "syncfs",
    "syncfs_trusted",
]

LIBRARY = Path(__file__).with_name("_kernels.so")
VERSION = 6
_WIDTHS = (2, 4, 8)

_lib: Any = None
_loaded = False
_fns: dict[tuple[str, int], Any] = {}  # (loop, width) -> its C function, typed once
_ARRAYS = {"join": 2, "join_delta": 3, "split": 2, "split_delta": 3}  # loop -> its buffers


def _name(loop: str, width: int) -> str:
    """The C function of a loop at a width: ``join_delta``, 4 -> ``cx_join4_delta``."""
    head, _, tail = loop.partition("_")
    return f"cx_{head}{width}" + (f"_{tail}" if tail else "")


def _load() -> Any:
    global _lib, _loaded
    if _loaded:
        return _lib
    _loaded = True
    if os.environ.get("CORALX_NO_KERNELS") or not LIBRARY.is_file():
        return None
    try:
        lib = ctypes.CDLL(str(LIBRARY))
        if lib.cx_kernels_version() != VERSION:
            return None
        for loop in _ARRAYS:
            for width in _WIDTHS:
                fn = getattr(lib, _name(loop, width))
                fn.argtypes = [ctypes.c_void_p] * _ARRAYS[loop] + [ctypes.c_size_t]
                fn.restype = None
                _fns[loop, width] = fn
        lib.cx_fsync_paths.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_size_t]
        lib.cx_fsync_paths.restype = ctypes.c_int
        lib.cx_fsync_one.argtypes = [ctypes.c_char_p]
        lib.cx_fsync_one.restype = ctypes.c_int
        lib.cx_syncfs_trusted.argtypes = [ctypes.c_char_p]
        lib.cx_syncfs_trusted.restype = ctypes.c_int
        lib.cx_syncfs.argtypes = [ctypes.c_char_p]
        lib.cx_syncfs.restype = ctypes.c_int
        lib.cx_start_writeback.argtypes = [ctypes.c_int]
        lib.cx_start_writeback.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    _lib = lib
    return lib


def available() -> bool:
    """Whether the compiled loops are in use (else numpy's)."""
    return _load() is not None


def _run(loop: str, width: int, *arrays: np.ndarray[Any, Any]) -> bool:
    """``loop`` over ``arrays`` (contiguous uint8 buffers of one length, whole elements of
    ``width`` bytes: the inputs, then the output). False, with nothing written, where the
    library is not in use or has no loop for these buffers."""
    lib = _load()
    out = arrays[-1]
    if (
        lib is None
        or width not in _WIDTHS
        or not out.flags.writeable
        or not all(a.flags.c_contiguous and a.dtype.char == "B" for a in arrays)  # uint8
    ):
        return False
    n = out.size
    if any(a.size != n for a in arrays) or n % width:
        raise ValueError(f"{loop}: buffers of different lengths, or a partial element")
    _fns[loop, width](*(a.ctypes.data for a in arrays), n // width)
    return True


def join(planes: np.ndarray[Any, Any], width: int, out: np.ndarray[Any, Any]) -> bool:
    """Interleave ``width`` byte planes into the elements of ``out``."""
    return _run("join", width, planes, out)


def join_delta(
    planes: np.ndarray[Any, Any],
    width: int,
    base: np.ndarray[Any, Any],
    out: np.ndarray[Any, Any],
) -> bool:
    """``out`` = ``base`` + the zigzag difference in ``planes``, wrapping; ``base`` may be
    ``out``."""
    return _run("join_delta", width, planes, base, out)


def split(raw: np.ndarray[Any, Any], width: int, planes: np.ndarray[Any, Any]) -> bool:
    """Cut the elements of ``raw`` into byte planes in ``planes``."""
    return _run("split", width, raw, planes)


def split_delta(
    raw: np.ndarray[Any, Any],
    base: np.ndarray[Any, Any],
    width: int,
    planes: np.ndarray[Any, Any],
) -> bool:
    """``planes`` = the byte planes of the zigzag-mapped wrapping difference ``raw - base``."""
    return _run("split_delta", width, raw, base, planes)


def fsync_paths(paths: list[str]) -> bool:
    """fsync every file or folder in ``paths`` in one call, without the GIL; False (nothing
    done) where the library is not in use. A path that cannot be opened is skipped; a failed
    fsync is ignored, as the records' syncer has always done (the next batch tries again)."""
    lib = _load()
    if lib is None or not paths:
        return lib is not None
    array = (ctypes.c_char_p * len(paths))(*map(os.fsencode, paths))
    return lib.cx_fsync_paths(array, len(paths)) >= 0


def fsync_one(path: str) -> bool:
    """fsync the file or folder ``path`` in one call, without the GIL; False (nothing done)
    where the library is not in use. A failure raises ``OSError`` naming the path."""
    lib = _load()
    if lib is None:
        return False
    err = lib.cx_fsync_one(os.fsencode(path))
    if err == errno.ENOSYS:  # a build without POSIX fsync: the caller's Python route
        return False
    if err:
        raise OSError(err, os.strerror(err), path)
    return True


def syncfs_trusted(path: str) -> bool:
    """Whether ``path`` is on a local file system (ext4, XFS, Btrfs, tmpfs) whose syncfs
    makes every file durable as fsync does each; False elsewhere, and where the library is
    not in use."""
    lib = _load()
    return lib is not None and lib.cx_syncfs_trusted(os.fsencode(path)) == 1


def syncfs(path: str) -> None:
    """syncfs on the file system holding the folder ``path``, without the GIL. Call it only
    where :func:`syncfs_trusted` said yes. A failure raises ``OSError`` naming the path."""
    lib = _load()
    err = errno.ENOSYS if lib is None else lib.cx_syncfs(os.fsencode(path))
    if err:
        raise OSError(err, os.strerror(err), path)


def start_writeback(fd: int) -> None:
    """Start writing the file ``fd``'s dirty pages to the disk, without waiting: a hint that
    makes nothing durable by itself (errors are left to the syncfs or fsync that follows)."""
    lib = _load()
    if lib is not None:
        lib.cx_start_writeback(fd)
