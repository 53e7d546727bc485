"""The append-only metric journal, ``experiments/<id>.metrics``.

A journal is a sequence of frames, each written with one ``write`` call to a file opened for
appending::

    frame   := MAGIC (4 bytes) | payload length (u32) | CRC-32 (u32) | payload
    payload := names: count (u32), then for each: id (u32), length (u16), UTF-8 bytes
               rows: count n (u32), then the columns
               name ids u32[n] | values f64[n] | steps i64[n] | times f64[n]

All integers and floats are little-endian. Two frame versions exist, told apart by their magic:

- ``CXJ2`` (written since format 2): the CRC covers the magic, the length and the payload, and
  a frame declares every metric name it uses, so each frame can be read on its own;
- ``CXJ1`` (the first format, still read): the CRC covers the payload only, and a frame
  declares only the names used for the first time.

The checksum is zlib's CRC-32: it is in the standard library (no new dependency), it was
already the first format's checksum, and it detects every burst error up to 32 bits and all
but one in 2**32 others in a frame, which is what a journal needs (it guards against damage,
not against an adversary). CRC-32C would be faster with the SSE4.2 instruction, but no
package offering it is in this project's dependencies.

Damage costs only the damaged frames: the reader skips a frame that fails its checksum and
resumes at the next frame that passes, and reports each skipped byte range in
:attr:`JournalColumns.damage`. A crash in the middle of a write leaves a last frame that is
too short (a torn tail, :attr:`JournalColumns.torn`): it loses that write and nothing before
it. Values are stored as logged, NaN payloads and infinities included; a step of ``None`` is
stored as ``NO_STEP``.
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
    "MAGIC_V1",
    "NO_STEP",
    "JournalColumns",
    "JournalDamaged",
    "JournalWriter",
    "damage_message",
    "encode_frame",
    "merge_summary",
    "read_checked",
    "read_journal",
    "summarize",
    "summarize_list",
]

MAGIC = b"CXJ2"
MAGIC_V1 = b"CXJ1"
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
    """One frame holding ``len(ids)`` rows; ``new_names`` should declare every name the rows
    use, so that the frame can be read without the frames before it."""
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
    head = MAGIC + _U32.pack(len(payload))
    return head + _U32.pack(zlib.crc32(payload, zlib.crc32(head))) + payload


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
        except BaseException as exc:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            if isinstance(exc, OSError) and exc.filename is None:
                exc.filename = str(self.path)  # the CLI's one line names the file
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
    damage: list[tuple[int, int]] = field(default_factory=list)
    """(byte offset, length) of each damaged stretch skipped while reading."""

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
    """Read every sound frame of a journal. A damaged frame is skipped, reading resumes at the
    next sound frame, and the skipped bytes are listed in ``damage``; a torn last frame (a
    crash during a write) is ignored and noted in ``torn``. A missing journal reads as empty.
    """
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
            pos = _skip_damage(data, pos, out, np)
            continue
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


def _skip_damage(data: bytes, pos: int, out: JournalColumns, np: Any) -> int:
    """Where reading resumes after an unreadable frame at ``pos``: the next offset where a
    sound frame starts, or the end. Records the skipped range (or a torn tail)."""
    probe = pos + 1
    while True:
        nxt = min(
            (i for i in (data.find(MAGIC, probe), data.find(MAGIC_V1, probe)) if i >= 0),
            default=-1,
        )
        if nxt < 0:
            break
        if _parse_frame(data, nxt, {}, np, names_only=True) is not None:
            out.damage.append((pos, nxt - pos))
            return nxt
        probe = nxt + 1
    if _torn_tail(data, pos):
        out.torn = True
    else:
        out.damage.append((pos, len(data) - pos))
    return len(data)


def _torn_tail(data: bytes, pos: int) -> bool:
    # A write cut short by a crash: a frame header (or part of one) whose frame would end past
    # the end of the file. Anything else that fails is damage.
    rest = data[pos:]
    if len(rest) < _HEADER.size:
        return MAGIC.startswith(rest[:4]) or MAGIC_V1.startswith(rest[:4])
    magic, length, _crc = _HEADER.unpack_from(data, pos)
    return magic in (MAGIC, MAGIC_V1) and pos + _HEADER.size + length > len(data)


def _parse_frame(
    data: bytes, pos: int, names: dict[int, str], np: Any, names_only: bool = False
) -> Any:
    if pos + _HEADER.size > len(data):
        return None
    magic, length, crc = _HEADER.unpack_from(data, pos)
    start = pos + _HEADER.size
    end = start + length
    if magic not in (MAGIC, MAGIC_V1) or end > len(data):
        return None
    payload = data[start:end]
    seed = zlib.crc32(data[pos : pos + 8]) if magic == MAGIC else 0
    if zlib.crc32(payload, seed) != crc:
        return None
    if names_only:
        return end, None
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


def read_checked(path: Path, counts: dict[str, int] | None = None) -> JournalColumns:
    """:func:`read_journal`, warning with :class:`JournalDamaged` (naming the run, the byte
    ranges and the metrics that lost values) when frames had to be skipped."""
    cols = read_journal(path)
    if cols.damage:
        import warnings

        warnings.warn(JournalDamaged(damage_message(path, cols, counts)), stacklevel=3)
    return cols


class JournalDamaged(UserWarning):
    """Some frames of a journal failed their checksum and were skipped: the values in them are
    lost, every other value was read."""


def damage_message(path: Path, cols: JournalColumns, counts: dict[str, int] | None = None) -> str:
    """What was lost in a damaged journal: the run, the byte ranges, and (given the record's
    count of values per metric) each metric that has fewer values than were logged."""
    run = path.name.split(".")[0]
    ranges = ", ".join(f"bytes {o}-{o + n - 1}" for o, n in cols.damage[:5])
    more = f" and {len(cols.damage) - 5} more stretches" if len(cols.damage) > 5 else ""
    text = f"the metric journal of run {run} ({path}) is damaged at {ranges}{more}"
    missing = _missing(cols, counts or {})
    if missing:
        text += "; values lost: " + ", ".join(
            f"{name!r} ({have} of {want} readable)" for name, have, want in missing
        )
    return text + (
        "; every other value was read. Restore the file from a copy or a remote "
        "(`coralx pull`) to get the rest back; `coralx fsck` lists all damage"
    )


def _missing(cols: JournalColumns, counts: dict[str, int]) -> list[tuple[str, int, int]]:
    have: dict[str, int] = {}
    if cols.ids is not None and len(cols.ids):
        import numpy as np

        ids, tally = np.unique(cols.ids, return_counts=True)
        by_id = dict(zip(ids.tolist(), tally.tolist(), strict=True))
        for nid, name in cols.names.items():
            have[name] = int(by_id.get(nid, 0))
    return [
        (name, have.get(name, 0), want)
        for name, want in sorted(counts.items())
        if have.get(name, 0) < want
    ]


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
