"""The byte-plane loops of ``_kernels.c``, loaded with ctypes, with numpy's code as the
fallback.

The library is compiled at install (``hatch_build.py``). Where it is missing, or
``CORALX_NO_KERNELS=1`` is set, every function here returns False, having written nothing,
and the caller runs the numpy version of the same loop (``codecs.py``): the same bytes, more
slowly.
ctypes releases the GIL during each call, so the decoding threads of a checkout run side by
side.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["available", "join", "join_delta", "split", "split_delta"]

LIBRARY = Path(__file__).with_name("_kernels.so")
VERSION = 2
_WIDTHS = (2, 4, 8)

_lib: Any = None
_loaded = False


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
        ptr, size = ctypes.c_void_p, ctypes.c_size_t
        for width in _WIDTHS:
            getattr(lib, f"cx_join{width}").argtypes = [ptr, size, ptr]
            getattr(lib, f"cx_join{width}").restype = None
            getattr(lib, f"cx_join{width}_delta").argtypes = [ptr, size, ptr, ptr]
            getattr(lib, f"cx_join{width}_delta").restype = None
            getattr(lib, f"cx_split{width}").argtypes = [ptr, size, ptr]
            getattr(lib, f"cx_split{width}").restype = None
            getattr(lib, f"cx_split{width}_delta").argtypes = [ptr, ptr, size, ptr]
            getattr(lib, f"cx_split{width}_delta").restype = None
    except (OSError, AttributeError):
        return None
    _lib = lib
    return lib


def available() -> bool:
    """Whether the compiled loops are in use (else numpy's)."""
    return _load() is not None


def _usable(width: int, *arrays: np.ndarray[Any, Any]) -> bool:
    """The loops take contiguous uint8 buffers; the last one is written."""
    return (
        width in _WIDTHS
        and arrays[-1].flags.writeable
        and all(a.flags.c_contiguous and a.dtype == np.uint8 for a in arrays)
    )


def join(planes: np.ndarray[Any, Any], width: int, out: np.ndarray[Any, Any]) -> bool:
    """Interleave ``width`` byte planes (uint8, ``width * n``) into ``out`` (uint8, the same
    length). False, with nothing written, where the library is not in use."""
    lib = _load()
    if lib is None or not _usable(width, planes, out) or planes.size != out.size:
        return False
    if out.size % width:
        raise ValueError("byte planes of a partial element")
    getattr(lib, f"cx_join{width}")(planes.ctypes.data, out.size // width, out.ctypes.data)
    return True


def join_delta(
    planes: np.ndarray[Any, Any],
    width: int,
    base: np.ndarray[Any, Any],
    out: np.ndarray[Any, Any],
) -> bool:
    """``out`` = ``base`` + the zigzag difference in ``planes`` (all uint8 of one length,
    elements of ``width`` bytes, wrapping); ``base`` may be ``out``. False, with nothing
    written, where the library is not in use."""
    lib = _load()
    if lib is None or not _usable(width, planes, base, out):
        return False
    if not planes.size == base.size == out.size or out.size % width:
        raise ValueError("a delta's planes, base and output differ in length")
    getattr(lib, f"cx_join{width}_delta")(
        planes.ctypes.data, out.size // width, base.ctypes.data, out.ctypes.data
    )
    return True


def split(raw: np.ndarray[Any, Any], width: int, planes: np.ndarray[Any, Any]) -> bool:
    """Cut ``raw`` (uint8, elements of ``width`` bytes) into byte planes in ``planes`` (uint8,
    the same length). False, with nothing written, where the library is not in use."""
    lib = _load()
    if lib is None or not _usable(width, raw, planes) or raw.size != planes.size:
        return False
    if raw.size % width:
        raise ValueError("byte planes of a partial element")
    getattr(lib, f"cx_split{width}")(raw.ctypes.data, raw.size // width, planes.ctypes.data)
    return True


def split_delta(
    raw: np.ndarray[Any, Any],
    base: np.ndarray[Any, Any],
    width: int,
    planes: np.ndarray[Any, Any],
) -> bool:
    """``planes`` = the byte planes of the zigzag-mapped wrapping difference ``raw - base``
    (all uint8 of one length). False, with nothing written, where the library is not in
    use."""
    lib = _load()
    if lib is None or not _usable(width, raw, base, planes):
        return False
    if not raw.size == base.size == planes.size or raw.size % width:
        raise ValueError("a delta's chunk, base and planes differ in length")
    getattr(lib, f"cx_split{width}_delta")(
        raw.ctypes.data, base.ctypes.data, raw.size // width, planes.ctypes.data
    )
    return True
