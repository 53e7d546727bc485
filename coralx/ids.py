"""Typed identifiers and their validation.

Ids are validated before they are ever used to build a path: a chunk id must be 64 lowercase
hex digits, an experiment id 20, so a user-supplied string can never walk out of ``.coralx/``.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from typing import NewType

from .errors import InvalidName

__all__ = [
    "ChunkId",
    "CommitId",
    "ExperimentId",
    "SweepId",
    "check_chunk_id",
    "check_experiment_id",
    "check_ref_name",
    "is_hex",
    "new_experiment_id",
    "new_sweep_id",
]

ChunkId = NewType("ChunkId", str)
"""BLAKE3 of a chunk's raw bytes, 64 lowercase hex digits."""

CommitId = NewType("CommitId", str)
"""A git commit id in the store, 40 lowercase hex digits."""

ExperimentId = NewType("ExperimentId", str)
"""A time-sortable experiment id: 12 hex digits of milliseconds, 8 random hex digits."""

SweepId = NewType("SweepId", str)
"""A sweep id, the same shape as an experiment id."""

_HEX = re.compile(r"[0-9a-f]+")
_CHUNK_ID = re.compile(r"[0-9a-f]{64}")
_EXPERIMENT_ID = re.compile(r"[0-9a-f]{20}")
# git check-ref-format, restricted further: no control characters, spaces or glob characters.
# Also as git: no component ending in ".lock", and not the single character "@" (which
# coralx, like git, reads as HEAD).
_BAD_REF = re.compile(
    r"(^[./-])|(\.\.)|([\x00-\x20~^:?*\[\\\x7f])|(@\{)|(/[./])|([./]$)|(\.lock$)|(\.lock/)|(^@$)"
)

_id_lock = threading.Lock()
_last_ms = 0


def is_hex(text: str) -> bool:
    """True if ``text`` is non-empty lowercase hex."""
    return bool(_HEX.fullmatch(text))


def check_chunk_id(value: str) -> ChunkId:
    """Return ``value`` as a :data:`ChunkId`, or raise :class:`InvalidName`."""
    if not isinstance(value, str) or not _CHUNK_ID.fullmatch(value):
        raise InvalidName("chunk id", value, "expected 64 lowercase hex digits")
    return ChunkId(value)


def check_experiment_id(value: str) -> ExperimentId:
    """Return ``value`` as a full :data:`ExperimentId`, or raise :class:`InvalidName`."""
    if not isinstance(value, str) or not _EXPERIMENT_ID.fullmatch(value):
        raise InvalidName("experiment id", value, "expected 20 lowercase hex digits")
    return ExperimentId(value)


def check_ref_name(value: str, kind: str = "branch") -> str:
    """Validate a branch or tag name by git's rules (and a few stricter ones)."""
    if not isinstance(value, str) or not value:
        raise InvalidName(kind, value, "a name cannot be empty")
    if _BAD_REF.search(value) or len(value) > 200:
        raise InvalidName(
            kind,
            value,
            "use letters, digits, '-', '_', '.' and '/' (not at the start or end), "
            "no '..', spaces or any of ~^:?*[\\",
        )
    if value == "HEAD" or value.startswith("refs/"):
        raise InvalidName(kind, value, "this name is reserved")
    return value


def _time_sortable_hex() -> str:
    """12 hex digits of milliseconds since the epoch, strictly increasing within a process,
    then 8 random hex digits so ids made at once by other processes or machines never clash."""
    global _last_ms
    with _id_lock:
        now = time.time_ns() // 1_000_000
        if now <= _last_ms:
            now = _last_ms + 1  # keep ids made in one process in creation order
        _last_ms = now
    return f"{now:012x}{secrets.token_hex(4)}"


def new_experiment_id() -> ExperimentId:
    """A new, time-sortable experiment id (sorted ids are in creation order)."""
    return ExperimentId(_time_sortable_hex())


def new_sweep_id() -> SweepId:
    """A new, time-sortable sweep id."""
    return SweepId(_time_sortable_hex())
