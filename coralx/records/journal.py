"""The append-only metric journal, ``experiments/<id>.metrics``.

A journal is a sequence of frames, each written with one ``write`` call to a file opened for
appending::

    frame   := MAGIC (4 bytes) | payload length (u32) | CRC-32 of payload (u32) | payload
    payload := new names: count (u32), then for each: id (u32), length (u16), UTF-8 bytes
               rows: count n (u32), then the columns
               name ids u32[n] | values f64[n] | steps i64[n] | times f64[n]

All integers and floats are little-endian. A frame declares the metric names it uses for the
first time, so a frame never depends on a later one. A crash in the middle of a write leaves a
last frame that is too short or fails its CRC: the reader stops there, so a torn write loses
that write and nothing before it. Values are stored as logged, NaN payloads and infinities
included; a step of ``None`` is stored as ``NO_STEP``.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "MAGIC",
    "NO_STEP",
    "JournalColumns",
    "JournalWriter",
    "encode_frame",
    "merge_summary",
    "read_journal",
    "summarize",
    "summarize_list",
]

MAGIC = b"CXJ1"
NO_STEP = -(2**63)
_HEADER = struct.Struct("<4sII")
_U32 = struct.Struct("<I")
_NAME = struct.Struct("<IH")
_LITTLE = sys.byteorder == "little"


_NUMPY_TYPES = {"I": "<u4", "d": "<f8", "q": "<i8"}


def _column(typecode: str, values: Iterable[Any]) -> bytes:
    if hasattr(values, "astype"):  # a numpy array: convert in one go
        return bytes(values.astype(_NUMPY_TYPES[typecode], copy=False).tobytes())
    col = array(typecode, values)
    if not _LITTLE:  # pragma: no cover - big-endian hosts
        col.byteswap()
    return col.tobytes()


def encode_frame(
    new_names: Sequence[tuple[int, str]],
    ids: Sequence[int] | Any,
    values: Sequence[float] | Any,
    steps: Sequence[int] | Any,
    times: Sequence[float] | Any,
) -> bytes:
    """One frame holding ``len(ids)`` rows and the names first used in it."""
    parts = [_U32.pack(len(new_names))]
    for nid, name in new_names:
        raw = name.encode("utf-8")
        parts.append(_NAME.pack(nid, len(raw)))
        parts.append(raw)
    parts.append(_U32.pack(len(ids)))
    parts.append(_column("I", ids))
    parts.append(_column("d", values))
    parts.append(_column("q", steps))
    parts.append(_column("d", times))
    payload = b"".join(parts)
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


class JournalWriter:
    """Appends frames to one run's journal. Only the run's own process writes to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1  # opened by the first append: a run that logs nothing has no journal
        self._size = 0

    def append(self, frame: bytes) -> None:
        """Write one frame. On a failed or short write the file is cut back to where it was,
        so a later frame never lands after a torn one."""
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._size = os.fstat(self._fd).st_size
        view = memoryview(frame)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except BaseException:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            raise
        self._size += len(frame)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass
class JournalColumns:
    """A journal read back: ``names[i]`` is the name of metric id ``i``; the four columns
    are numpy arrays of equal length, in logging order."""

    names: dict[int, str] = field(default_factory=dict)
    ids: Any = None
    values: Any = None
    steps: Any = None
    times: Any = None
    torn: bool = False

    def __len__(self) -> int:
        return 0 if self.ids is None else len(self.ids)

    def select(self, name: str) -> tuple[Any, Any, Any]:
        """(values, steps, times) of one metric."""
        import numpy as np

        wanted = [nid for nid, n in self.names.items() if n == name]
        if not wanted or self.ids is None:
            empty = np.empty(0)
            return empty, np.empty(0, dtype=np.int64), empty
        mask = self.ids == wanted[0]
        return self.values[mask], self.steps[mask], self.times[mask]


def read_journal(path: Path) -> JournalColumns:
    """Read every complete frame of a journal; a torn or damaged tail is ignored (and noted in
    ``torn``). A missing journal reads as empty."""
    import numpy as np

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    out = JournalColumns()
    chunks: list[tuple[Any, Any, Any, Any]] = []
    pos = 0
    while pos < len(data):
        frame = _parse_frame(data, pos, out.names, np)
        if frame is None:
            out.torn = True
            break
        pos, cols = frame
        chunks.append(cols)
    if chunks:
        out.ids, out.values, out.steps, out.times = (
            np.concatenate([c[i] for c in chunks]) for i in range(4)
        )
    else:
        out.ids = np.empty(0, dtype=np.uint32)
        out.values = np.empty(0)
        out.steps = np.empty(0, dtype=np.int64)
        out.times = np.empty(0)
    return out


def _parse_frame(data: bytes, pos: int, names: dict[int, str], np: Any) -> Any:
    if pos + _HEADER.size > len(data):
        return None
    magic, length, crc = _HEADER.unpack_from(data, pos)
    start = pos + _HEADER.size
    end = start + length
    if magic != MAGIC or end > len(data):
        return None
    payload = data[start:end]
    if zlib.crc32(payload) != crc:
        return None
    try:
        (n_names,) = _U32.unpack_from(payload, 0)
        p = 4
        new: dict[int, str] = {}
        for _ in range(n_names):
            nid, size = _NAME.unpack_from(payload, p)
            p += _NAME.size
            new[nid] = payload[p : p + size].decode("utf-8")
            p += size
        (n,) = _U32.unpack_from(payload, p)
        p += 4
        ids = np.frombuffer(payload, dtype="<u4", count=n, offset=p)
        p += 4 * n
        values = np.frombuffer(payload, dtype="<f8", count=n, offset=p)
        p += 8 * n
        steps = np.frombuffer(payload, dtype="<i8", count=n, offset=p)
        p += 8 * n
        times = np.frombuffer(payload, dtype="<f8", count=n, offset=p)
    except (struct.error, ValueError, UnicodeDecodeError):
        return None
    names.update(new)
    return end, (ids, values, steps, times)


# -- running summaries ------------------------------------------------------------------------


def summarize(values: Any, steps: Any) -> dict[str, Any]:
    """The summary of one metric's values (numpy arrays, in logging order)."""
    import numpy as np

    n = len(values)
    if n == 0:
        return {"count": 0}
    last_step = int(steps[-1])
    out: dict[str, Any] = {
        "last": float(values[-1]),
        "last_step": None if last_step == NO_STEP else last_step,
        "count": n,
        "min": None,
        "max": None,
        "best_step_min": None,
        "best_step_max": None,
    }
    finite = np.isfinite(values)
    if finite.any():
        idx = np.flatnonzero(finite)
        fv = values[idx]
        lo = int(idx[int(np.argmin(fv))])
        hi = int(idx[int(np.argmax(fv))])
        out["min"], out["max"] = float(values[lo]), float(values[hi])
        out["best_step_min"] = _step(steps[lo])
        out["best_step_max"] = _step(steps[hi])
    return out


def summarize_list(values: list[float], steps: list[int]) -> dict[str, Any]:
    """:func:`summarize` for short Python lists: the same result, without numpy's per-call
    overhead."""
    last_step = steps[-1]
    out: dict[str, Any] = {
        "last": values[-1],
        "last_step": None if last_step == NO_STEP else last_step,
        "count": len(values),
        "min": None,
        "max": None,
        "best_step_min": None,
        "best_step_max": None,
    }
    finite = [v for v in values if v - v == 0.0]  # drops NaN and infinities
    if finite:
        lo, hi = min(finite), max(finite)
        # The first occurrence of each wins a tie, as in the numpy path.
        i_lo, i_hi = values.index(lo), values.index(hi)
        out["min"], out["max"] = lo, hi
        out["best_step_min"] = None if steps[i_lo] == NO_STEP else steps[i_lo]
        out["best_step_max"] = None if steps[i_hi] == NO_STEP else steps[i_hi]
    return out


def _step(raw: Any) -> int | None:
    value = int(raw)
    return None if value == NO_STEP else value


def merge_summary(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Combine the summary so far with the summary of the values logged after it. Ties keep the
    earlier step, as if the summary had been computed over the whole history at once."""
    if not old or not old.get("count"):
        return dict(new)
    if not new.get("count"):
        return dict(old)
    out = dict(old)
    out["count"] = old["count"] + new["count"]
    out["last"], out["last_step"] = new["last"], new["last_step"]
    if new.get("min") is not None and (old.get("min") is None or new["min"] < old["min"]):
        out["min"], out["best_step_min"] = new["min"], new["best_step_min"]
    if new.get("max") is not None and (old.get("max") is None or new["max"] > old["max"]):
        out["max"], out["best_step_max"] = new["max"], new["best_step_max"]
    return out
