"""Tensor dtypes and chunking: the safetensors dtype table, and fixed element-aligned chunks.

Every dtype is stored as its raw little-endian bits. The table says, for each safetensors dtype
name, how wide an element is, which numpy type carries it (``ml_dtypes`` gives numpy BF16 and
the F8 types), and how to map its bit pattern to an integer that sorts like the value, so that
the delta codec sees small integers for small changes.

>>> dtype = dtype_of(np.zeros(3, np.float32))
>>> dtype.name, dtype.itemsize
('F32', 4)
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidValue

__all__ = [
    "CHUNK_BYTES",
    "DTYPES",
    "DType",
    "chunk_spans",
    "dtype_by_name",
    "dtype_of",
    "to_numpy",
]

CHUNK_BYTES = 4 << 20
"""Target chunk size: a few MiB, big enough that per-chunk overhead vanishes, small enough
that chunks are a unit of parallel work and reuse."""


@dataclass(frozen=True)
class DType:
    """One safetensors dtype: its name, element width and how its bits are ordered.

    ``ordering`` is ``"float"`` for sign-magnitude floats, ``"int"`` for integers and bools.
    Deltas difference every dtype's bits as unsigned integers; the ordering is what the
    deltas written before 0.3 (``CODEC_DELTA_ORDERED``) need to decode.
    """

    name: str
    itemsize: int
    numpy_name: str
    ordering: str

    @property
    def numpy(self) -> np.dtype[Any]:
        """The numpy dtype of this safetensors dtype (ml_dtypes for BF16 and F8)."""
        if self.numpy_name.startswith("ml_dtypes."):
            ml_dtypes = _ml_dtypes()
            if ml_dtypes is None:
                raise InvalidValue(
                    f"{self.name} tensors need the ml_dtypes package: pip install ml_dtypes"
                )
            return np.dtype(getattr(ml_dtypes, self.numpy_name.split(".", 1)[1]))
        return np.dtype(self.numpy_name)

    @property
    def uint(self) -> np.dtype[Any]:
        """The unsigned integer type of the same width: the codecs work on these bits."""
        return np.dtype(f"<u{self.itemsize}")


DTYPES: tuple[DType, ...] = (
    DType("BOOL", 1, "bool", "int"),
    DType("U8", 1, "uint8", "int"),
    DType("I8", 1, "int8", "int"),
    DType("U16", 2, "<u2", "int"),
    DType("I16", 2, "<i2", "int"),
    DType("U32", 4, "<u4", "int"),
    DType("I32", 4, "<i4", "int"),
    DType("U64", 8, "<u8", "int"),
    DType("I64", 8, "<i8", "int"),
    DType("F16", 2, "<f2", "float"),
    DType("F32", 4, "<f4", "float"),
    DType("F64", 8, "<f8", "float"),
    DType("BF16", 2, "ml_dtypes.bfloat16", "float"),
    DType("F8_E4M3", 1, "ml_dtypes.float8_e4m3fn", "float"),
    DType("F8_E5M2", 1, "ml_dtypes.float8_e5m2", "float"),
    # E8M0 has no sign bit: its bits already sort like its values.
    DType("F8_E8M0", 1, "ml_dtypes.float8_e8m0fnu", "int"),
)

_BY_NAME = {d.name: d for d in DTYPES}


def _ml_dtypes() -> Any:
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - ml_dtypes is a dependency
        return None
    return ml_dtypes


def dtype_by_name(name: str) -> DType:
    """The :class:`DType` for a safetensors dtype name such as ``"BF16"``."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise InvalidValue(
            f"unknown tensor dtype {name!r}; coralx stores {', '.join(_BY_NAME)}"
        ) from None


def _numpy_to_name() -> dict[np.dtype[Any], str]:
    table: dict[np.dtype[Any], str] = {}
    for d in DTYPES:
        try:
            table[d.numpy] = d.name
        except InvalidValue:  # pragma: no cover - without ml_dtypes
            continue
    return table


_NUMPY_TO_NAME: dict[np.dtype[Any], str] | None = None


def dtype_of(array: np.ndarray[Any, Any]) -> DType:
    """The :class:`DType` of a numpy array, or :class:`InvalidValue` for one coralx cannot
    store bit-exactly (object, string, complex, ...)."""
    global _NUMPY_TO_NAME
    if _NUMPY_TO_NAME is None:
        _NUMPY_TO_NAME = _numpy_to_name()
    dt = array.dtype
    if dt.byteorder == ">" or (dt.byteorder == "=" and sys.byteorder == "big"):
        dt = dt.newbyteorder("<")
    name = _NUMPY_TO_NAME.get(dt)
    if name is None:
        raise InvalidValue(
            f"cannot store an array of dtype {array.dtype}: coralx stores the safetensors "
            f"dtypes ({', '.join(_BY_NAME)}); convert it first, e.g. array.astype(np.float32)"
        )
    return _BY_NAME[name]


def to_numpy(value: object, name: str) -> np.ndarray[Any, Any]:
    """A C-contiguous, little-endian numpy array for a staged value (numpy array or torch
    tensor). Anything else is an :class:`InvalidValue` naming the tensor."""
    array: np.ndarray[Any, Any]
    if isinstance(value, np.ndarray):
        array = value
    elif isinstance(value, np.generic):  # a numpy scalar: a 0-d tensor
        array = np.asarray(value)
    elif _is_torch_tensor(value):
        from .torch_compat import torch_to_numpy

        array = torch_to_numpy(value)
    else:
        raise InvalidValue(
            f"tensor {name!r} is a {type(value).__name__}, not an array; "
            "stage numpy arrays or torch tensors"
        )
    dtype = dtype_of(array)  # raises for object and other unsupported dtypes
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    del dtype
    return array


def _is_torch_tensor(value: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def chunk_spans(nbytes: int, itemsize: int, chunk_bytes: int = CHUNK_BYTES) -> Iterator[slice]:
    """Byte ranges of the chunks of a tensor of ``nbytes`` bytes: fixed size, a whole number
    of elements each, the last one shorter."""
    step = max(itemsize, chunk_bytes - chunk_bytes % itemsize)
    for start in range(0, nbytes, step):
        yield slice(start, min(start + step, nbytes))
