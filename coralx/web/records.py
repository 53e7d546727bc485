"""A read-only, cached view of the experiment records for the viewer's runs table.

The records (``.coralx/experiments/<id>.json``) are the source of truth. Parsing 10,000 JSON
files on every request would be far too slow for a table that must answer in milliseconds, so
this view keeps each parsed record with the ``(mtime, size)`` it was read at and re-reads only
the files that changed. Records are rewritten by an atomic rename, which also changes the
folder's mtime: while the folder's mtime stays put and is not recent, nothing changed and a
request costs one ``stat``.

The view never writes: not the records, not the index.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from ..errors import AmbiguousRevision, ExperimentNotFound, InvalidValue
from ..ids import is_hex

__all__ = ["RecordCache", "RunQuery", "flatten_params", "parse_time"]

ID_LENGTH = 20
STATUSES = ("pending", "running", "completed", "failed", "cancelled")
# A folder mtime this close to now may still be followed by a change in the same clock tick.
_FRESH_SECONDS = 0.2


def parse_time(value: Any) -> float | None:
    """An ISO timestamp (as the records store them) as seconds since the epoch, or None."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"opt": {"lr": 0.1}}`` -> ``{"opt.lr": 0.1}``: one table column per leaf."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:  # records hold plain dicts (and dict is fast)
            flat.update(flatten_params(value, f"{name}."))
        else:
            flat[name] = value
    return flat


@dataclass
class Row:
    """What the runs table needs of one record, computed once per version of the file."""

    record: dict[str, Any]
    id: str
    name: str
    status: str
    tags: list[str]
    params: dict[str, Any]
    created: float | None
    duration: float | None
    sweep_id: str | None
    parent: str | None

    def to_dict(self, metrics: Sequence[str] = ()) -> dict[str, Any]:
        summary = self.record.get("metrics_summary") or {}
        rec = self.record
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "stale": _is_stale(rec),
            "tags": self.tags,
            "params": self.params,
            "created_at": rec.get("created_at"),
            "started_at": rec.get("started_at"),
            "ended_at": rec.get("ended_at"),
            "duration": self.duration,
            "sweep_id": self.sweep_id,
            "parent_experiment": self.parent,
            "commit_hash": rec.get("commit_hash"),
            "metrics": {m: _finite(summary.get(m)) for m in metrics if m in summary},
        }


def _finite(summary: Any) -> Any:
    """JSON has no NaN or infinity: send them as strings the page shows as they are."""
    if isinstance(summary, float) and not math.isfinite(summary):
        return str(summary)
    if isinstance(summary, dict):
        return {k: _finite(v) for k, v in summary.items()}
    return summary


def _is_stale(record: Mapping[str, Any]) -> bool:
    """A RUNNING record whose lease ran out: its process is most likely gone.

    Shown as such, but not marked FAILED here: the viewer does not write.
    """
    if record.get("status") != "running":
        return False
    raw = record.get("lease_until")
    # The tracker writes the lease as seconds since the epoch; accept an ISO time too.
    lease = float(raw) if isinstance(raw, int | float) else parse_time(raw)
    return lease is not None and lease < time.time()


def _make_row(record: dict[str, Any]) -> Row:
    started = parse_time(record.get("started_at"))
    ended = parse_time(record.get("ended_at"))
    if started is not None and ended is None and record.get("status") == "running":
        duration: float | None = max(0.0, time.time() - started)
    elif started is not None and ended is not None:
        duration = max(0.0, ended - started)
    else:
        duration = None
    sweep = record.get("sweep") or {}
    params = record.get("params") or {}
    if not isinstance(sweep, dict):
        sweep = {}
    return Row(
        record=record,
        id=str(record.get("experiment_id", "")),
        name=str(record.get("name", "")),
        status=str(record.get("status", "")).lower(),
        tags=[str(t) for t in record.get("tags") or []],
        params=flatten_params(params) if isinstance(params, dict) else {},
        created=parse_time(record.get("created_at")),
        duration=duration,
        sweep_id=sweep.get("sweep_id"),
        parent=record.get("parent_experiment"),
    )


@dataclass
class RunQuery:
    """Filters, sort and page of the runs table (the query string of ``/api/runs``)."""

    tags: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    name: str | None = None
    params: list[str] = field(default_factory=list)  # "key=value"
    sweep: str | None = None
    sort: str = "created_at"
    descending: bool = True
    offset: int = 0
    limit: int = 50

    def matches(self, row: Row) -> bool:
        if self.statuses and row.status not in self.statuses:
            return False
        if self.tags and not all(t in row.tags for t in self.tags):
            return False
        if self.sweep and row.sweep_id != self.sweep:
            return False
        if self.name and not any(_name_matches(self.name, n) for n in _names(row)):
            return False
        return all(_param_matches(p, row.params) for p in self.params)


def _names(row: Row) -> list[str]:
    """A run's name and, for a sweep run (``<experiment>/<configuration>``), each part."""
    sweep = row.record.get("sweep")
    if not isinstance(sweep, Mapping):
        return [row.name]
    parts = [sweep.get("config_name"), sweep.get("experiment")]
    return [row.name, *(str(p) for p in parts if p)]


def _name_matches(pattern: str, name: str) -> bool:
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern.lower() in name.lower()


def _param_matches(expr: str, params: Mapping[str, Any]) -> bool:
    key, sep, text = expr.partition("=")
    if not sep:
        raise InvalidValue(f"param filter {expr!r} must look like key=value, e.g. lr=0.01")
    key = key.strip()
    if key not in params:
        return False
    value = params[key]
    try:
        wanted = json.loads(text)
    except ValueError:
        wanted = text
    return bool(value == wanted or str(value) == text)


def _key_function(column: str) -> Callable[[Row], Any]:
    """How to read the value a column sorts by from a row (None when the row has none)."""
    if column.startswith("params."):
        key = column[len("params.") :]
        return lambda row: row.params.get(key)
    if column.startswith("metrics."):
        metric, _, stat = column[len("metrics.") :].rpartition(".")
        if not metric:  # "metrics.loss" means the last value
            metric, stat = stat, "last"

        def metric_value(row: Row) -> Any:
            summary = (row.record.get("metrics_summary") or {}).get(metric)
            return summary.get(stat) if isinstance(summary, Mapping) else None

        return metric_value
    if column == "tags":
        return lambda row: ",".join(row.tags)
    if column in ("created_at", "created"):
        return lambda row: row.created
    if column in _ROW_COLUMNS:
        return lambda row: getattr(row, column)
    raise InvalidValue(
        f"cannot sort by {column!r}; use one of {', '.join(sorted(SORTABLE))}, "
        "params.<name> or metrics.<name>[.last|.min|.max]"
    )


def _sorted(rows: Iterable[Row], column: str, descending: bool) -> list[Row]:
    """Rows by ``column``; numbers before strings, rows without a value (or NaN) last."""
    get = _key_function(column)
    present: list[tuple[int, Any, str, Row]] = []
    missing: list[Row] = []
    for row in rows:
        value = get(row)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            missing.append(row)
        elif isinstance(value, bool | int | float):
            present.append((0, float(value), row.id, row))
        else:
            present.append((1, str(value), row.id, row))
    ranks = {p[0] for p in present}
    # itemgetter keys compare in C; the rank only matters when numbers and strings mix.
    present.sort(
        key=itemgetter(0, 1, 2) if len(ranks) > 1 else itemgetter(1, 2), reverse=descending
    )
    return [p[3] for p in present] + missing


_ROW_COLUMNS = {"id", "name", "status", "duration", "sweep_id", "parent"}
SORTABLE = (*_ROW_COLUMNS, "created_at", "tags")


class RecordCache:
    """Parsed experiment records of one store, refreshed from disk as they change."""

    def __init__(self, store: Path) -> None:
        self.folder = store / "experiments"
        self._rows: dict[str, tuple[tuple[int, int], Row]] = {}
        self._folder_mtime: int | None = None
        self._lock = threading.Lock()
        self._generation = 0  # goes up whenever a record is added, changed or removed
        self._tags: tuple[int, list[str]] | None = None
        self._orders: dict[tuple[Any, ...], tuple[int, Any]] = {}
        self._row_list: tuple[int, list[Row]] = (-1, [])

    # -- loading ----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the records that changed since the last call."""
        with self._lock:
            try:
                mtime = self.folder.stat().st_mtime_ns
            except FileNotFoundError:
                self._rows.clear()
                return
            recent = time.time() - mtime / 1e9 < _FRESH_SECONDS
            if mtime == self._folder_mtime and not recent:
                return
            self._scan()
            self._folder_mtime = mtime

    def _scan(self) -> None:
        seen: set[str] = set()
        with os.scandir(self.folder) as entries:
            for entry in entries:
                name = entry.name
                if not name.endswith(".json") or len(name) != ID_LENGTH + 5:
                    continue
                run_id = name[:ID_LENGTH]
                if not is_hex(run_id):
                    continue
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                seen.add(run_id)
                key = (st.st_mtime_ns, st.st_size)
                cached = self._rows.get(run_id)
                if cached is not None and cached[0] == key:
                    continue
                row = self._load(entry.path)
                if row is not None:
                    self._rows[run_id] = (key, row)
                    self._generation += 1
        for gone in set(self._rows) - seen:
            del self._rows[gone]
            self._generation += 1

    @staticmethod
    def _load(path: str) -> Row | None:
        from ..records.store import unseal

        try:
            with open(path, "rb") as f:
                record = json.loads(unseal(f.read().decode("utf-8")))
        except (OSError, ValueError):
            # Unreadable, or not matching its digest: left out, never shown as something it
            # is not (`coralx fsck` names it).
            return None
        if not isinstance(record, dict):
            return None
        record.setdefault("experiment_id", os.path.basename(path)[:ID_LENGTH])
        return _make_row(record)

    # -- queries ----------------------------------------------------------------------------

    def rows(self) -> list[Row]:
        """Every readable record (a list shared between callers: do not change it)."""
        self.refresh()
        with self._lock:
            if self._row_list[0] != self._generation:
                self._row_list = (self._generation, [row for _key, row in self._rows.values()])
            return self._row_list[1]

    def resolve(self, id_or_prefix: str) -> str:
        """The full id of a run from its id or an unambiguous prefix of at least 4 digits."""
        text = id_or_prefix.strip().lower()
        if not (4 <= len(text) <= ID_LENGTH) or not is_hex(text):
            raise ExperimentNotFound(id_or_prefix)
        self.refresh()
        with self._lock:
            if text in self._rows:
                return text
            found = [run_id for run_id in self._rows if run_id.startswith(text)]
        if not found:
            raise ExperimentNotFound(id_or_prefix)
        if len(found) > 1:
            raise AmbiguousRevision(id_or_prefix, found, kind="experiment id")
        return found[0]

    def get(self, id_or_prefix: str) -> dict[str, Any]:
        """The record of one run, as stored."""
        run_id = self.resolve(id_or_prefix)
        with self._lock:
            entry = self._rows.get(run_id)
        if entry is None:
            raise ExperimentNotFound(id_or_prefix)
        return entry[1].record

    def row(self, run_id: str) -> Row:
        run_id = self.resolve(run_id)
        with self._lock:
            return self._rows[run_id][1]

    def children(self, run_id: str) -> list[Row]:
        return [row for row in self.rows() if row.parent == run_id]

    def query(self, q: RunQuery, metrics: Iterable[str] = ()) -> dict[str, Any]:
        """One page of the runs table, with the totals and column names the page needs."""
        rows = self.rows()
        hits, ordered, counts = self._ordered(rows, q)
        page = ordered[q.offset : q.offset + q.limit]
        metric_names = list(metrics) or _metric_names(page)
        return {
            "total": len(hits),
            "all": len(rows),
            "offset": q.offset,
            "limit": q.limit,
            "rows": [row.to_dict(metric_names) for row in page],
            "columns": {"params": _param_names(page), "metrics": metric_names},
            "statuses": counts,
        }

    def _ordered(self, rows: list[Row], q: RunQuery) -> tuple[list[Row], list[Row], Any]:
        """The rows a query selects, in order, and their status counts: computed once per
        version of the records and query, so paging through a table costs a slice."""
        key = (
            tuple(q.tags),
            tuple(q.statuses),
            q.name,
            tuple(q.params),
            q.sweep,
            q.sort,
            q.descending,
        )
        with self._lock:
            cached = self._orders.get(key)
            generation = self._generation
        if cached is not None and cached[0] == generation:
            return cached[1]
        filtered = q.statuses or q.tags or q.sweep or q.name or q.params
        hits = [row for row in rows if q.matches(row)] if filtered else rows
        result = (hits, _sorted(hits, q.sort, q.descending), _status_counts(hits))
        with self._lock:
            if len(self._orders) >= 64:
                self._orders.clear()
            self._orders[key] = (generation, result)
        return result

    def tags(self) -> list[str]:
        """Every tag in the store (computed once per change of the records)."""
        rows = self.rows()
        with self._lock:
            if self._tags is not None and self._tags[0] == self._generation:
                return self._tags[1]
            generation = self._generation
        tags = sorted({tag for row in rows for tag in row.tags})
        with self._lock:
            self._tags = (generation, tags)
        return tags


def _param_names(rows: Sequence[Row]) -> list[str]:
    names: dict[str, None] = {}
    for row in rows:
        for key in row.params:
            names.setdefault(key, None)
    return list(names)


def _metric_names(rows: Sequence[Row]) -> list[str]:
    names: dict[str, None] = {}
    for row in rows:
        for key in row.record.get("metrics_summary") or {}:
            names.setdefault(key, None)
    return list(names)


def _status_counts(rows: Sequence[Row]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    return counts
