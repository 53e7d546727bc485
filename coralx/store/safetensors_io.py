"""Reading safetensors files tensor by tensor, without loading the whole file.

The format is an 8-byte little-endian header length, a JSON header (name -> dtype, shape,
byte offsets; ``__metadata__`` -> str -> str), then the data. Reading maps the file and
hands out read-only numpy views, so a file larger than memory can be staged; no code is ever
run (no pickle). The ``safetensors`` package's numpy loader reads whole files and has no
BF16 or F8 numpy types, hence this reader; writing is in ``weights.write_safetensors``.

The header comes from whoever made the file, so it is parsed strictly
(:func:`parse_header`): every rule below is checked before any tensor is touched, and a
violation is :class:`~coralx.errors.InvalidWeightsFile` naming the file and the rule, never a
``RecursionError`` or numpy's "array is too big".

- the header is at most :data:`MAX_HEADER` bytes of UTF-8 JSON, nested at most
  :data:`MAX_DEPTH` deep, an object whose names are unique;
- ``__metadata__``, if present, maps strings to strings;
- every other entry is an object with exactly ``dtype`` (a known name), ``shape`` (at most
  :data:`MAX_DIMS` integers, each ``0 <= d < 2**63``, their product in bytes below ``2**63``)
  and ``data_offsets`` (two integers ``0 <= begin <= end``);
- the element count times the item size equals ``end - begin``;
- every span lies inside the data section and no two spans overlap (safetensors' own rules).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from typing import Any, NamedTuple

import numpy as np

from ..errors import InvalidWeightsFile
from .tensors import DType, dtype_by_name

__all__ = ["MAX_DEPTH", "MAX_DIMS", "MAX_HEADER", "HeaderEntry", "parse_header", "read_safetensors"]

MAX_HEADER = 100 << 20  # as the safetensors library: no real model needs more
MAX_DEPTH = 8  # a valid header nests 3 deep (header, entry, shape)
MAX_DIMS = 32  # numpy's limit on every version coralx supports
_LIMIT = 2**63  # sizes and offsets are 64-bit


class HeaderEntry(NamedTuple):
    """One tensor of a parsed header: offsets relative to the start of the data section."""

    name: str
    dtype: DType
    shape: tuple[int, ...]
    begin: int
    end: int


def read_safetensors(
    path: str | os.PathLike[str],
) -> tuple[dict[str, np.ndarray[Any, Any]], dict[str, str]]:
    """The tensors (read-only views of the mapped file) and the metadata of a file.

    >>> tensors, metadata = read_safetensors("model.safetensors")
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise InvalidWeightsFile(str(path), f"it is {size} bytes, shorter than any header")
        n = int.from_bytes(head, "little")
        if n > MAX_HEADER:
            raise InvalidWeightsFile(
                str(path), f"the header claims {n} bytes, more than the limit of {MAX_HEADER}"
            )
        if 8 + n > size:
            raise InvalidWeightsFile(
                str(path), f"the header claims {n} bytes but the file has {size - 8} after it"
            )
        raw = f.read(n)
    start = 8 + n
    entries, metadata = parse_header(raw, size - start, str(path))
    mapped = np.memmap(path, dtype=np.uint8, mode="r") if size > start else None
    tensors: dict[str, np.ndarray[Any, Any]] = {}
    for e in entries:
        if e.end == e.begin or mapped is None:
            tensors[e.name] = np.zeros(e.shape, dtype=e.dtype.numpy)
        else:
            view = mapped[start + e.begin : start + e.end]
            tensors[e.name] = view.view(e.dtype.numpy).reshape(e.shape)
    return tensors, metadata


def parse_header(
    raw: bytes, data_len: int, path: str = "the file"
) -> tuple[list[HeaderEntry], dict[str, str]]:
    """Check a safetensors header (its JSON bytes) against every rule of the module docstring,
    for a data section of ``data_len`` bytes. Returns the tensors in file order and the
    metadata; :class:`InvalidWeightsFile` naming ``path`` and the rule broken otherwise."""
    header = _load_json(raw, path)
    metadata = _metadata(header.pop("__metadata__", None), path)
    entries = [_entry(name, info, data_len, path) for name, info in header.items()]
    _check_spans(entries, path)
    return entries, metadata


def _load_json(raw: bytes, path: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidWeightsFile(path, f"the header is not UTF-8 (byte {exc.start})") from None
    depth = _max_depth(text)
    if depth > MAX_DEPTH:
        raise InvalidWeightsFile(
            path, f"the header nests {depth} deep; a safetensors header nests at most 3"
        )
    try:
        header = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise InvalidWeightsFile(path, f"the header names {exc.args[0]!r} twice") from None
    except ValueError as exc:
        raise InvalidWeightsFile(path, f"the header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise InvalidWeightsFile(path, "the header is not a JSON object")
    return header


def _max_depth(text: str) -> int:
    # Brackets inside strings count too, which can only overstate the depth of a header that
    # is deep already; str.count runs in C, so the common shallow header costs microseconds.
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return 0
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    return deepest
        elif ch in "]}":
            depth -= 1
    return deepest


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _metadata(value: Any, path: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidWeightsFile(path, "__metadata__ must map strings to strings")
    return dict(value)


def _entry(name: str, info: Any, data_len: int, path: str) -> HeaderEntry:
    def bad(rule: str) -> InvalidWeightsFile:
        return InvalidWeightsFile(path, f"tensor {name!r}: {rule}")

    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise bad("an entry must be an object with dtype, shape and data_offsets, nothing else")
    if not isinstance(info["dtype"], str):
        raise bad("dtype must be a string")
    try:
        dtype = dtype_by_name(info["dtype"])
    except ValueError as exc:
        raise bad(str(exc)) from None
    shape = info["shape"]
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(_is_int(d) for d in shape):
        raise bad(f"shape must be a list of at most {MAX_DIMS} integers")
    if any(not 0 <= d < _LIMIT for d in shape):
        raise bad("every dimension must be between 0 and 2**63 - 1")
    if math.prod(d for d in shape if d) * dtype.itemsize >= _LIMIT:
        raise bad("the shape is too large for a 64-bit size")
    offsets = info["data_offsets"]
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(x) for x in offsets):
        raise bad("data_offsets must be two integers")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise bad(f"data_offsets [{begin}, {end}] must satisfy 0 <= begin <= end")
    nbytes = math.prod(shape) * dtype.itemsize
    if end - begin != nbytes:
        raise bad(
            f"its shape {shape} of {dtype.name} takes {nbytes} bytes but its span [{begin}, "
            f"{end}) holds {end - begin}"
        )
    if end > data_len:
        raise bad(f"its span [{begin}, {end}) ends past the data section ({data_len} bytes)")
    return HeaderEntry(name, dtype, tuple(shape), begin, end)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_spans(entries: list[HeaderEntry], path: str) -> None:
    spans = sorted((e.begin, e.end, e.name) for e in entries if e.end > e.begin)
    for (_b0, e0, n0), (b1, _e1, n1) in itertools.pairwise(spans):
        if b1 < e0:
            raise InvalidWeightsFile(
                path, f"tensors {n0!r} and {n1!r} overlap (byte {b1} is in both)"
            )
