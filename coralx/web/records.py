"""A read-only, cached view of the experiment records for the viewer's runs table.

The records (``.coralx/experiments/<id>.json``) are the source of truth. Parsing 10,000 JSON
files on every request would be far too slow for a table that must answer in milliseconds, so
this view keeps each parsed record with the ``(mtime, size)`` it was read at and re-reads only
the files that changed. Records are rewritten by an atomic rename, which also changes the
folder's mtime: while the folder's mtime stays put and is not recent, nothing changed and a
request costs one ``stat``.

Which runs a query selects, and in what order, is decided by the one query engine
(:mod:`coralx.records.query`), in memory on the cached records: the same filter string gives
the same runs as ``coralx exp list --where``.

The view never writes: not the records, not the index.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ExperimentNotFound, InvalidValue
from ..ids import is_hex
from ..records import query as q
from ..records.query import STATUSES, flatten_params

__all__ = ["RecordCache", "RunQuery", "flatten_params", "parse_time"]

ID_LENGTH = 20
# A folder mtime this close to now may still be followed by a change in the same clock tick.
_FRESH_SECONDS = 0.2


def parse_time(value: Any) -> float | None:
    """An ISO timestamp (as the records store them) as seconds since the epoch, or None."""
    return q.timestamp(value) if value else None


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
    facts: q.Facts

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
        facts=q.facts(record),
    )


@dataclass
class RunQuery:
    """Filters, sort and page of the runs table (the query string of ``/api/runs``).

    ``where`` is a filter string of the query language; the boxes (``name``: a glob,
    ``params``: ``key=value``, ``tags``, ``statuses``, ``sweep``) are the keyword filters of
    ``tracker.list``. All must hold.
    """

    tags: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    name: str | None = None
    params: list[str] = field(default_factory=list)  # "key=value"
    sweep: str | None = None
    where: str | None = None
    sort: str = "created_at"
    descending: bool = True
    offset: int = 0
    limit: int = 50

    def filter(self) -> q.Filter:
        """The one engine's filter for this query (raises on a bad filter or status)."""
        keywords = q.from_keywords(
            status=self.statuses or None,
            tags=self.tags or None,
            name=self.name or None,
            params=q.parse_param_pairs(self.params) or None,
            sweep_id=self.sweep or None,
        )
        return q.parse_filter(self.where or None) & keywords

    def sort_keys(self) -> list[q.SortKey]:
        column = _SORT_ALIASES.get(self.sort, self.sort)
        if column not in q.ATTRIBUTES and not column.startswith(("params.", "metrics.")):
            raise InvalidValue(
                f"cannot sort by {self.sort!r}; use one of {', '.join(SORTABLE)}, "
                "params.<name> or metrics.<name>[.last|.min|.max|.count]"
            )
        return [q.SortKey(k.fld, self.descending) for k in q.parse_sort(column)]

    def matches(self, row: Row) -> bool:
        return self.filter().matches(row.facts)


_SORT_ALIASES = {"created_at": "created", "sweep_id": "sweep"}
SORTABLE = ("created_at", *(a for a in q.ATTRIBUTES if a != "created"))


def _facts_of(row: Row) -> q.Facts:
    return row.facts


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
        self._sorted_ids: tuple[int, list[str]] = (-1, [])
        self._family: tuple[int, Any] = (-1, None)
        # The read-only connection to index.sqlite, kept with the inode it opened (a reindex
        # renames a new file into place) so that its page cache serves query after query.
        self._index: tuple[int, Any] | None = None
        self._index_lock = threading.Lock()

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
        """The full id of a run from its id or an unambiguous prefix (the engine's rule)."""
        self.refresh()
        with self._lock:
            if self._sorted_ids[0] != self._generation:
                self._sorted_ids = (self._generation, sorted(self._rows))
            ids = self._sorted_ids[1]
        return q.resolve_prefix(id_or_prefix, q.prefix_lookup(ids))

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

    def family(self) -> tuple[dict[str, Row], dict[str, list[str]]]:
        """(every row by id, child ids by parent id), computed once per change of the records,
        so a run page's lineage costs two dict lookups a generation, not a pass over 100,000
        runs."""
        rows = self.rows()
        with self._lock:
            if self._family[0] == self._generation:
                return self._family[1]
            generation = self._generation
        by_id = {row.id: row for row in rows}
        by_parent: dict[str, list[str]] = {}
        for row in rows:
            if row.parent:
                by_parent.setdefault(row.parent, []).append(row.id)
        with self._lock:
            self._family = (generation, (by_id, by_parent))
        return by_id, by_parent

    def query(self, query: RunQuery, metrics: Iterable[str] = ()) -> dict[str, Any]:
        """One page of the runs table, with the totals and column names the page needs."""
        rows = self.rows()
        hits, ordered, counts = self._ordered(rows, query)
        page = ordered[query.offset : query.offset + query.limit]
        metric_names = list(metrics) or _metric_names(page)
        return {
            "total": len(hits),
            "all": len(rows),
            "offset": query.offset,
            "limit": query.limit,
            "rows": [row.to_dict(metric_names) for row in page],
            "columns": {
                "params": _param_names(page),
                "metrics": metric_names,
                "modes": {m: q.guess_mode(m) for m in metric_names},
            },
            "statuses": counts,
        }

    def _ordered(self, rows: list[Row], query: RunQuery) -> tuple[list[Row], list[Row], Any]:
        """The rows a query selects, in order, and their status counts: computed once per
        version of the records and query, so paging through a table costs a slice."""
        key = (
            tuple(query.tags),
            tuple(query.statuses),
            query.name,
            tuple(query.params),
            query.sweep,
            query.where,
            query.sort,
            query.descending,
        )
        with self._lock:
            cached = self._orders.get(key)
            generation = self._generation
        if cached is not None and cached[0] == generation:
            return cached[1]
        flt = query.filter()
        keys = query.sort_keys()
        now = time.time()
        ordered = self._from_index(flt, keys, now, len(rows))
        if ordered is None:  # no index in step with the records: the engine's in-memory path
            test = flt.root.test
            hits = rows if isinstance(flt.root, q.All) else [r for r in rows if test(r.facts, now)]
            ordered = q.sort_facts(hits, keys, _facts_of, now)
        result = (ordered, ordered, _status_counts(ordered))
        with self._lock:
            if len(self._orders) >= 64:
                self._orders.clear()
            self._orders[key] = (generation, result)
        return result

    def _from_index(
        self, flt: q.Filter, keys: list[q.SortKey], now: float, count: int
    ) -> list[Row] | None:
        """The rows the engine's SQL path selects, in order, when ``index.sqlite`` (opened
        read-only) is known to hold exactly the records cached here; else None.

        The index is in step when it says it saw the folder at the mtime this cache read it at
        (the tracker's own rule for skipping a re-scan) and holds as many runs. Both paths give
        the same answer (``tests/test_query_engine.py``); SQL is faster on 100,000 runs.
        """
        import sqlite3

        from ..records.index import INDEX_FILE, SCHEMA

        path = self.folder.parent / INDEX_FILE
        if self._folder_mtime is None:
            return None
        with self._index_lock:
            try:
                conn = self._index_connection(path)
                if conn is None:
                    return None
                # One read transaction: the checks and the query see the same index.
                conn.execute("BEGIN")
                try:
                    (version,) = conn.execute("PRAGMA user_version").fetchone()
                    seen = conn.execute(
                        "SELECT value FROM meta WHERE key = 'folder_mtime'"
                    ).fetchone()
                    if version != SCHEMA or seen is None or seen[0] != str(self._folder_mtime):
                        return None
                    if conn.execute("SELECT count(*) FROM experiments").fetchone()[0] != count:
                        return None
                    source, cond, args = flt.source(
                        now, count=lambda sql, a: int(conn.execute(sql, a).fetchone()[0])
                    )
                    order, order_args = q.order_sql(keys, now)
                    sql = f"SELECT e.id FROM {source} WHERE {cond} ORDER BY {order}"
                    ids = [r[0] for r in conn.execute(sql, [*args, *order_args])]
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error:
                self._close_index()
                return None
        with self._lock:
            found = [self._rows.get(i) for i in ids]
        if any(entry is None for entry in found):
            return None
        return [entry[1] for entry in found if entry is not None]

    def _index_connection(self, path: Path) -> Any:
        """The read-only connection to the index at ``path`` (opened again when the file there
        is a new one), or None if there is no index."""
        import sqlite3

        from ..records.index import _param_eq

        try:
            ino = path.stat().st_ino
        except FileNotFoundError:
            self._close_index()
            return None
        if self._index is not None and self._index[0] == ino:
            return self._index[1]
        self._close_index()
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, check_same_thread=False)
        conn.isolation_level = None  # autocommit: no read transaction held between queries
        conn.create_function("coralx_match", 2, q.sql_match, deterministic=True)
        conn.create_function("param_eq", 3, _param_eq, deterministic=True)
        self._index = (ino, conn)
        return conn

    def _close_index(self) -> None:
        if self._index is not None:
            with contextlib.suppress(Exception):
                self._index[1].close()
            self._index = None

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
