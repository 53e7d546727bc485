"""Reading safetensors files tensor by tensor, without loading the whole file.

The format is an 8-byte little-endian header length, a JSON header (name -> dtype, shape,
byte offsets; ``__metadata__`` -> str -> str), then the data. Reading maps the file and
hands out read-only numpy views, so a file larger than memory can be staged; no code is ever
run (no pickle). The ``safetensors`` package's numpy loader reads whole files and has no
BF16 or F8 numpy types, hence this reader; writing is in ``weights.write_safetensors``.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from ..errors import InvalidValue
from .tensors import dtype_by_name

__all__ = ["read_safetensors"]

MAX_HEADER = 100 << 20


def read_safetensors(
    path: str | os.PathLike[str],
) -> tuple[dict[str, np.ndarray[Any, Any]], dict[str, str]]:
    """The tensors (read-only views of the mapped file) and the metadata of a file."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise InvalidValue(f"{path} is not a safetensors file (too short)")
        n = int.from_bytes(head, "little")
        if n > MAX_HEADER or 8 + n > size:
            raise InvalidValue(f"{path} is not a safetensors file (bad header length)")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidValue(f"{path} has an unreadable safetensors header: {exc}") from None
    if not isinstance(header, dict):
        raise InvalidValue(f"{path} has an unreadable safetensors header")
    metadata = header.pop("__metadata__", None) or {}
    start = 8 + n
    data_len = size - start
    mapped = np.memmap(path, dtype=np.uint8, mode="r") if data_len > 0 else None
    tensors: dict[str, np.ndarray[Any, Any]] = {}
    for name, info in header.items():
        try:
            dtype = dtype_by_name(info["dtype"])
            shape = tuple(int(d) for d in info["shape"])
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidValue(f"{path}: tensor {name!r} has a bad header entry ({exc})") from None
        nbytes = math.prod(shape) * dtype.itemsize
        if any(d < 0 for d in shape) or end - begin != nbytes or not 0 <= begin <= end <= data_len:
            raise InvalidValue(f"{path}: tensor {name!r} has offsets that do not fit its shape")
        if nbytes == 0 or mapped is None:
            tensors[name] = np.zeros(shape, dtype=dtype.numpy)
        else:
            raw = mapped[start + begin : start + end]
            tensors[name] = raw.view(dtype.numpy).reshape(shape)
    return tensors, {str(k): str(v) for k, v in metadata.items()}
