"""Checks of what users put into a record (metric names and values, steps, tags, JSON data),
and of what the store holds (records, journals, blobs, sweeps: :func:`check_store_files`,
which ``coralx fsck`` runs beside its check of the chunks).

Each input check raises a :class:`~coralx.errors.CoralxError` that says what is wrong, before
anything is written, so bad input never changes a record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import InvalidName, InvalidValue
from .journal import NO_STEP

__all__ = [
    "STEP_MAX",
    "STEP_MIN",
    "as_float",
    "as_step",
    "check_json",
    "check_metric_name",
    "check_store_files",
    "check_tags",
]


def as_float(value: Any) -> float:
    """A logged value as a float: numbers, numpy scalars, 0-d arrays and one-element tensors."""
    if isinstance(value, str | bytes) or value is None:
        raise InvalidValue(f"a metric value must be a number, not {value!r}")
    try:
        return float(value)
    except OverflowError:
        raise InvalidValue(
            f"a metric value must fit in a 64-bit float; {_short(value)} is too large"
        ) from None
    except (TypeError, ValueError) as exc:
        raise InvalidValue(
            f"a metric value must be a number (or a numpy scalar or 0-d tensor), not "
            f"{type(value).__name__}: {exc}"
        ) from None


STEP_MIN = NO_STEP + 1  # NO_STEP itself stands for "no step" in the journal
STEP_MAX = 2**63 - 1


def as_step(step: Any) -> int:
    """A step as a journal can store it: None, or an integer in [STEP_MIN, STEP_MAX]."""
    if step is None:
        return NO_STEP
    if isinstance(step, bool) or not hasattr(step, "__index__"):
        raise InvalidValue(f"a step must be an integer or None, not {step!r}")
    value = int(step.__index__())
    if not STEP_MIN <= value <= STEP_MAX:
        raise InvalidValue(
            f"step {_short(value)} is out of range: a step is a 64-bit integer from "
            f"-(2**63 - 1) to 2**63 - 1"
        )
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} digits)"


def check_metric_name(name: Any) -> str:
    if not isinstance(name, str):
        raise InvalidName("metric", name, "a metric name must be a string")
    if not name.strip():
        raise InvalidName("metric", name, "a metric name cannot be empty")
    if len(name) > 250 or any(ord(c) < 32 for c in name):
        raise InvalidName("metric", name, "use at most 250 printable characters")
    return name


def check_json(value: Any, what: str) -> Any:
    """``value`` as plain JSON data (numpy scalars become numbers), or InvalidValue."""
    try:
        text = json.dumps(value, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise InvalidValue(
            f"{what} must be JSON data (numbers, strings, booleans, None, lists and dicts "
            f"with string keys; no NaN or infinity): {exc}"
        ) from None
    return json.loads(text)


def _json_default(value: Any) -> Any:
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        return item()
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON data")


def check_tags(tags: Iterable[str] | None) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [tags]
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise InvalidName("tag", tag, "a tag must be a non-empty string")
        if tag not in out:
            out.append(tag)
    return out


# -- the store's own files, for `coralx fsck` ---------------------------------------------------


def check_store_files(store: Path) -> list[dict[str, Any]]:
    """Check every record, journal, blob and sweep file of the store at ``store`` (the
    ``.coralx`` folder); one entry per damaged file: ``{"kind", "file", "error", "repair"}``.

    Records are checked against their digest, journals frame by frame, blobs against their
    content address, sweep records for being readable JSON of their sweep, and the loose git
    objects (commits, trees, manifests) against their SHA-1, as ``git fsck`` does.

    >>> [d["file"] for d in check_store_files(repo.path)]
    []
    """
    damaged: list[dict[str, Any]] = []
    damaged += _check_records(store / "experiments")
    damaged += _check_blobs(store / "blobs")
    damaged += _check_sweeps(store / "sweeps")
    damaged += _check_git_objects(store / "objects")
    return damaged


def _entry(kind: str, path: Path, error: str, repair: str) -> dict[str, Any]:
    return {"kind": kind, "file": str(path), "error": error, "repair": repair}


def _check_records(folder: Path) -> list[dict[str, Any]]:
    from ..errors import RecordDamaged
    from .journal import damage_message, read_journal
    from .store import RecordStore

    out: list[dict[str, Any]] = []
    if not folder.is_dir():
        return out
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or len(path.stem) != 20:
            continue
        counts: dict[str, int] = {}
        if path.suffix == ".json":
            try:
                data, _text = RecordStore.load_checked(path)
            except FileNotFoundError:
                continue
            except RecordDamaged as exc:
                out.append(_entry("record", path, exc.reason, "coralx fsck --repair"))
        elif path.suffix == ".metrics":
            cols = read_journal(path)
            if cols.damage:
                try:
                    data, _text = RecordStore.load_checked(path.with_suffix(".json"))
                    summary = data.get("metrics_summary") or {}
                    counts = {k: int(v.get("count") or 0) for k, v in summary.items()}
                except (OSError, RecordDamaged):
                    pass
                message = damage_message(path, cols, counts)
                out.append(_entry("journal", path, message, "restore from a copy or a remote"))
    return out


def _check_blobs(folder: Path) -> list[dict[str, Any]]:
    from blake3 import blake3

    out: list[dict[str, Any]] = []
    for path in _fanned_out(folder):
        if path.name.startswith("."):
            continue
        expected = path.parent.name + path.name
        try:
            got = blake3(path.read_bytes()).hexdigest()
        except OSError as exc:
            out.append(_entry("blob", path, f"cannot be read ({exc})", "restore it"))
            continue
        if got != expected:
            out.append(
                _entry(
                    "blob",
                    path,
                    f"content hashes to {got[:16]}..., not to its name",
                    "restore it from a remote (`coralx pull`) or log the artifact again",
                )
            )
    return out


def _check_sweeps(folder: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            ok = isinstance(data, dict) and data.get("sweep_id") == path.stem
            problem = "" if ok else "is not the record of this sweep"
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            problem = f"cannot be read ({exc})"
        if problem:
            out.append(
                _entry(
                    "sweep",
                    path,
                    problem,
                    "run the sweep again (finished runs are reused from their records)",
                )
            )
    return out


def _check_git_objects(folder: Path) -> list[dict[str, Any]]:
    import hashlib
    import zlib

    out: list[dict[str, Any]] = []
    for path in _fanned_out(folder):
        if len(path.name) != 38:
            continue
        try:
            got = hashlib.sha1(zlib.decompress(path.read_bytes())).hexdigest()
            problem = "" if got == path.parent.name + path.name else f"hashes to {got}"
        except (OSError, zlib.error) as exc:
            problem = f"cannot be read ({exc})"
        if problem:
            out.append(
                _entry(
                    "git object",
                    path,
                    problem,
                    "restore it from a remote (`coralx pull`) or a backup",
                )
            )
    return out


def _fanned_out(folder: Path) -> Iterator[Path]:
    """The files of a folder fanned out by the first two hex digits of their ids
    (``ab/cdef...``), sorted."""
    if not folder.is_dir():
        return
    for sub in sorted(folder.iterdir()):
        if len(sub.name) == 2 and sub.is_dir():
            yield from sorted(sub.iterdir())
