"""The derived SQLite index of experiment records, ``.coralx/index.sqlite``.

The JSON records are the truth; this index exists so that queries over thousands of runs take
milliseconds. It can always be rebuilt from the records (``coralx exp reindex``), and
:meth:`Index.sync` repairs what a crash between "record written" and "index updated" left
behind. Every row carries the record's ``revision``: an upsert never replaces a newer revision
with an older one, so several processes indexing the same record cannot move it backwards.

This module imports only the standard library (sqlite3, json), so the CLI's query commands
start fast.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["INDEX_FILE", "Filters", "Index", "file_stamp", "parse_time"]

INDEX_FILE = "index.sqlite"
SCHEMA = 3
BUSY_TIMEOUT_MS = 60_000
_MISSING = object()

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ts REAL NOT NULL,
    branch TEXT,
    code_commit TEXT,
    parent TEXT,
    sweep_id TEXT,
    host TEXT,
    pid INTEGER,
    pid_start INTEGER,
    lease_until REAL,
    commit_hash TEXT,
    params TEXT NOT NULL,
    revision INTEGER NOT NULL,
    stamp TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS experiments_status ON experiments(status);
CREATE INDEX IF NOT EXISTS experiments_created ON experiments(created_ts);
CREATE INDEX IF NOT EXISTS experiments_name ON experiments(name);
CREATE INDEX IF NOT EXISTS experiments_sweep ON experiments(sweep_id);
CREATE INDEX IF NOT EXISTS experiments_parent ON experiments(parent);
CREATE TABLE IF NOT EXISTS tags (
    tag TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (tag, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_id ON tags(id);
CREATE TABLE IF NOT EXISTS metrics (
    name TEXT NOT NULL,
    id TEXT NOT NULL,
    last REAL,
    last_finite REAL,
    min REAL,
    max REAL,
    count INTEGER NOT NULL,
    PRIMARY KEY (name, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS metrics_id ON metrics(id);
CREATE INDEX IF NOT EXISTS metrics_min ON metrics(name, min);
CREATE INDEX IF NOT EXISTS metrics_max ON metrics(name, max);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT
);
"""

_EXP_COLUMNS = (
    "id, name, status, created_ts, branch, code_commit, parent, sweep_id, host, pid, "
    "pid_start, lease_until, commit_hash, params, revision, stamp, record"
)


_UPSERT_SQL = (
    f"INSERT INTO experiments ({_EXP_COLUMNS}) VALUES ({','.join('?' * 17)}) "
    "ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _EXP_COLUMNS.split(", ")[1:])
    + " WHERE excluded.revision >= experiments.revision"
)


def _revision(record: dict[str, Any]) -> int:
    return int(record.get("revision") or 0)


def file_stamp(st: os.stat_result) -> str:
    """What tells one version of a record file from another: every write is a new file
    (temp + rename), so the inode changes even when two writes share a clock tick."""
    return f"{st.st_mtime_ns}-{st.st_ino}-{st.st_size}"


def parse_time(value: Any) -> float:
    """Seconds since the epoch of an ISO time string, a datetime, or a number."""
    if value is None:
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value)).timestamp()


def _num(value: Any) -> float | None:
    """A stored metric number: JSON strings "NaN"/"Infinity" become floats."""
    if value is None:
        return None
    return float(value)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _param_eq(params_text: str, key: str, value_text: str) -> int:
    params = json.loads(params_text)
    return int(params.get(key, _MISSING) == json.loads(value_text))


@dataclass
class Filters:
    """What ``list`` and ``find_best`` filter on. Every field left as None filters nothing."""

    status: Sequence[str] | None = None
    tags: Sequence[str] | None = None
    tags_match: str = "all"
    branch: str | None = None
    name: str | None = None
    params: dict[str, Any] | None = None
    since: float | None = None
    sweep_id: str | None = None
    parent: str | None = None
    code_commits: Iterable[str] | None = None
    ids: Sequence[str] | None = None
    extra: list[tuple[str, list[Any]]] = field(default_factory=list)


class Index:
    """A connection to ``index.sqlite``, safe to share between the threads of one process."""

    def __init__(self, path: Path, on_rebuild: Any = None) -> None:
        self.path = path
        self._lock = threading.RLock()
        self.created = False
        # Called (with no arguments) after a damaged index was set aside and replaced by an
        # empty one, to fill it again from the records before the query is answered.
        self.on_rebuild = on_rebuild
        self._recovering = False
        self._ino = -1
        self._conn = self._connect()

    # -- opening ----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            return self._open()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise
            # "file is not a database", "database disk image is malformed": the index is
            # derived from the records, so a damaged one is set aside and rebuilt.
            self._set_aside_if_damaged()
            return self._open()

    def _set_aside_if_damaged(self) -> None:
        from .._fs import FileLock

        with FileLock(self.path.with_name(self.path.name + ".lock"), timeout=60):
            try:  # another process may have replaced it already
                probe = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000)
                try:
                    probe.execute("PRAGMA user_version").fetchone()
                    # Every page: damage far from the header passes a look at the schema.
                    (verdict,) = probe.execute("PRAGMA quick_check(1)").fetchone()
                    if verdict == "ok":
                        return
                finally:
                    probe.close()
            except sqlite3.OperationalError:
                return
            except sqlite3.DatabaseError:
                pass
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.path, self.path.with_name(self.path.name + ".damaged"))
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path.with_name(self.path.name + suffix))

    def _open(self) -> sqlite3.Connection:
        fresh = not self.path.exists()
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.create_function("fnmatch", 2, _fnmatch, deterministic=True)
        conn.create_function("param_eq", 3, _param_eq, deterministic=True)
        self._retry(lambda: self._setup(conn))
        self.created = fresh
        self._ino = _inode(self.path)
        return conn

    # -- damage found in use -----------------------------------------------------------------

    def _follow_replacement(self) -> None:
        # Another process set a damaged index aside and made a new one: use the new file.
        if self._recovering or _inode(self.path) == self._ino:
            return
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        self._conn = self._connect()

    def _recover(self, exc: sqlite3.DatabaseError) -> None:
        """The index turned out damaged while in use ("database disk image is malformed"):
        set it aside (beside any other process that has it open: they follow the new file
        at their next use), open a new one, and fill it from the records."""
        if self._recovering:
            raise exc
        self._recovering = True
        try:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._set_aside_if_damaged()
            self._conn = self._connect()
            if self.on_rebuild is not None:
                self.on_rebuild()
        finally:
            self._recovering = False

    @staticmethod
    def _setup(conn: sqlite3.Connection) -> None:
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        # The index is derived data: NORMAL keeps it consistent across crashes in WAL mode
        # (a power cut may lose the last commits, which `sync` re-indexes from the records).
        conn.execute("PRAGMA synchronous = NORMAL")
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version < SCHEMA:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Again, inside the transaction: another process may have just set it up.
                (version,) = conn.execute("PRAGMA user_version").fetchone()
                if 0 < version < SCHEMA:  # an older layout: the index is derived, rebuild it
                    for table in ("experiments", "tags", "metrics", "meta"):
                        conn.execute(f"DROP TABLE IF EXISTS {table}")
                # One statement at a time: executescript() would commit the open transaction.
                for statement in _SCHEMA_SQL.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            conn.execute(f"PRAGMA user_version = {SCHEMA}")
            if conn.in_transaction:
                conn.execute("COMMIT")

    @staticmethod
    def _retry(action: Any, attempts: int = 200) -> Any:
        # Switching to WAL or creating tables needs a moment alone with the file; when many
        # processes open a fresh index at once, SQLite may say "locked" without waiting.
        for attempt in range(attempts):
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if attempt == attempts - 1:
                    raise
                time.sleep(0.01 + 0.005 * attempt)
        return None  # pragma: no cover

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._follow_replacement()
            conn = self._conn
            try:
                self._retry(lambda: conn.execute("BEGIN IMMEDIATE"))
                try:
                    yield conn
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError):
                    raise
                # The rows of this write come from records already on disk: the rebuild
                # from the records indexes them; the caller still learns the write failed.
                self._recover(exc)
                raise

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            self._follow_replacement()
            try:
                rows: list[Any] = self._retry(lambda: self._conn.execute(sql, args).fetchall())
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError):
                    raise
                self._recover(exc)  # then answer from the index rebuilt from the records
                rows = self._retry(lambda: self._conn.execute(sql, args).fetchall())
            return rows

    # -- writing ----------------------------------------------------------------------------

    def upsert(self, record: dict[str, Any], text: str, stamp: str) -> bool:
        """Index one record (``text`` is its JSON as stored). Returns False when the index
        already holds a newer revision of it."""
        return self.upsert_many([(record, text, stamp)]) == 1

    def upsert_many(self, items: Iterable[tuple[dict[str, Any], str, str]]) -> int:
        """Index many records in one transaction, a few statements for the whole batch; each
        item is (record, its JSON text, its file stamp). The record may be the parsed JSON or
        ``ExperimentRecord.index_view()``. Returns how many rows were written (a record older
        than its row is skipped)."""
        newest: dict[str, tuple[dict[str, Any], str, str]] = {}
        for item in items:
            eid = item[0]["experiment_id"]
            if eid not in newest or _revision(item[0]) >= _revision(newest[eid][0]):
                newest[eid] = item
        if not newest:
            return 0
        with self._write() as conn:
            return self._upsert_batch(conn, newest)

    @staticmethod
    def _upsert_batch(
        conn: sqlite3.Connection, items: dict[str, tuple[dict[str, Any], str, str]]
    ) -> int:
        # Inside the write transaction: no other process can move a revision meanwhile.
        stored = dict(
            conn.execute(
                "SELECT id, revision FROM experiments WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(items)),),
            ).fetchall()
        )
        rows: list[tuple[Any, ...]] = []
        tags: list[tuple[str, str]] = []
        metrics: list[tuple[Any, ...]] = []
        for eid, (rec, text, stamp) in items.items():
            revision = _revision(rec)
            if revision < stored.get(eid, revision):
                continue
            code = rec.get("code") or {}
            sweep = rec.get("sweep") or {}
            params = rec.get("params_json")
            if params is None:
                params = json.dumps(rec.get("params") or {}, sort_keys=True)
            rows.append(
                (eid, rec["name"], rec["status"], parse_time(rec.get("created_at")),
                 rec.get("branch"), code.get("commit"), rec.get("parent_experiment"),
                 sweep.get("sweep_id"), rec.get("host"), rec.get("pid"), rec.get("pid_start"),
                 rec.get("lease_until"), rec.get("commit_hash"), params, revision, stamp, text)
            )  # fmt: skip
            tags.extend((tag, eid) for tag in rec.get("tags") or ())
            for name, s in (rec.get("metrics_summary") or {}).items():
                last = _num(s.get("last"))
                metrics.append(
                    (name, eid, last, _finite(last), _num(s.get("min")), _num(s.get("max")),
                     int(s.get("count") or 0))
                )  # fmt: skip
        if not rows:
            return 0
        conn.executemany(_UPSERT_SQL, rows)
        ids = [(row[0],) for row in rows]
        conn.executemany("DELETE FROM tags WHERE id = ?", ids)
        conn.executemany("INSERT OR IGNORE INTO tags (tag, id) VALUES (?, ?)", tags)
        conn.executemany("DELETE FROM metrics WHERE id = ?", ids)
        conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?)", metrics)
        return len(rows)

    def remove(self, experiment_id: str) -> None:
        with self._write() as conn:
            for table in ("experiments", "tags", "metrics"):
                conn.execute(f"DELETE FROM {table} WHERE id = ?", (experiment_id,))

    def clear(self) -> None:
        with self._write() as conn:
            for table in ("experiments", "tags", "metrics", "meta"):
                conn.execute(f"DELETE FROM {table}")

    # -- reading ----------------------------------------------------------------------------

    def stamps(self) -> dict[str, str]:
        return dict(self._read("SELECT id, stamp FROM experiments"))

    def ids_with_prefix(self, prefix: str, limit: int = 11) -> list[str]:
        """Full ids starting with ``prefix`` (lowercase hex), at most ``limit``."""
        return [
            r[0]
            for r in self._read(
                "SELECT id FROM experiments WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
                (prefix, prefix + "g", limit),
            )
        ]

    def record(self, experiment_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT record FROM experiments WHERE id = ?", (experiment_id,))
        return json.loads(rows[0][0]) if rows else None

    def running(self) -> list[tuple[str, str | None, int | None, int | None, float | None]]:
        """(id, host, pid, pid_start, lease_until) of every run indexed as running."""
        return self._read(
            "SELECT id, host, pid, pid_start, lease_until FROM experiments WHERE status = ?",
            ("running",),
        )

    def count(self) -> int:
        return int(self._read("SELECT count(*) FROM experiments")[0][0])

    def select(
        self,
        filters: Filters,
        *,
        sort_metric: str | None = None,
        sort_mode: str = "min",
        limit: int | None = None,
        columns: str = "e.record",
    ) -> list[Any]:
        """Rows of ``columns`` for the runs matching ``filters``: newest first, or by the best
        value of ``sort_metric`` (runs without a finite value of it last)."""
        where, args = _where(filters)
        join = ""
        if sort_metric is not None:
            col = "m.min" if sort_mode == "min" else "m.max"
            join = "LEFT JOIN metrics m ON m.id = e.id AND m.name = ?"
            args = [sort_metric, *args]
            direction = "ASC" if sort_mode == "min" else "DESC"
            order = f"({col} IS NULL), {col} {direction}, e.id"
        else:
            order = "e.id DESC"
        sql = f"SELECT {columns} FROM experiments e {join} {where} ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return self._read(sql, args)

    def best(
        self,
        metric: str,
        filters: Filters,
        *,
        mode: str = "min",
        by: str = "best",
        limit: int | None = None,
    ) -> list[tuple[str, float, int]]:
        """(record JSON, value, count) of the runs with the best value of ``metric``."""
        col = "m.min" if mode == "min" else "m.max"
        if by == "last":
            col = "m.last_finite"
        direction = "ASC" if mode == "min" else "DESC"
        where, args = _where(filters, prefix=f"m.name = ? AND {col} IS NOT NULL")
        sql = (
            f"SELECT e.record, {col}, m.count FROM metrics m JOIN experiments e ON e.id = m.id "
            f"{where} ORDER BY {col} {direction}, e.id"
        )
        args = [metric, *args]
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return self._read(sql, args)

    def summary(self) -> dict[str, Any]:
        by_status = dict(self._read("SELECT status, count(*) FROM experiments GROUP BY status"))
        names = self._read("SELECT count(DISTINCT name) FROM experiments")[0][0]
        branches = [
            r[0]
            for r in self._read(
                "SELECT DISTINCT branch FROM experiments WHERE branch IS NOT NULL ORDER BY branch"
            )
        ]
        logged = self._read("SELECT coalesce(sum(count), 0) FROM metrics")[0][0]
        metric_names = [r[0] for r in self._read("SELECT DISTINCT name FROM metrics ORDER BY 1")]
        tags = dict(self._read("SELECT tag, count(*) FROM tags GROUP BY tag ORDER BY 2 DESC"))
        return {
            "total_experiments": sum(by_status.values()),
            "by_status": by_status,
            "unique_names": int(names),
            "branches": branches,
            "total_metrics_logged": int(logged),
            "metric_names": metric_names,
            "tags": tags,
        }

    # -- keeping in step with the records ---------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str | None) -> None:
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def sync(self, folder: Path, load: Any, force: bool = False) -> dict[str, int]:
        """Bring the index in line with the records in ``folder``: index records that are new
        or changed since they were indexed, drop rows whose record is gone. ``load(path)``
        returns ``(record dict, text)`` or None for a record that cannot be read.

        Every record write renames a file into ``folder``, which moves the folder's mtime; when
        it has not moved since the last full check, nothing can be missing and the check of
        each file is skipped."""
        started = time.time()
        folder_mtime = str(folder.stat().st_mtime_ns)
        if not force and self.get_meta("folder_mtime") == folder_mtime:
            return {"indexed": 0, "removed": 0, "unreadable": 0}
        result = self._sync(folder, load)
        # Trust the folder's mtime only once it is old enough that a rename in the same clock
        # tick as our look at it cannot hide behind it.
        settled = started - int(folder_mtime) / 1e9 > 2.0
        self.set_meta("folder_mtime", folder_mtime if settled else None)
        return result

    def _sync(self, folder: Path, load: Any) -> dict[str, int]:
        indexed = self.stamps()
        seen: set[str] = set()
        todo: list[tuple[dict[str, Any], str, str]] = []
        skipped = 0
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if not name.endswith(".json") or name.startswith("."):
                    continue
                eid = name[:-5]
                seen.add(eid)
                try:
                    mtime = file_stamp(entry.stat())
                except FileNotFoundError:
                    continue
                if indexed.get(eid) == mtime:
                    continue
                loaded = load(Path(entry.path))
                if loaded is None:
                    skipped += 1
                    continue
                todo.append((loaded[0], loaded[1], mtime))
        added = self.upsert_many(todo) if todo else 0
        removed = 0
        for eid in set(indexed) - seen:
            # The record is written before it is indexed, so a row whose file is missing was
            # deleted, unless it was written after the folder was listed: look again.
            if not (folder / f"{eid}.json").exists():
                self.remove(eid)
                removed += 1
        return {"indexed": added, "removed": removed, "unreadable": skipped}


def _inode(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return -1


def _fnmatch(pattern: str, name: str | None) -> int:
    return int(name is not None and fnmatch.fnmatchcase(name, pattern))


def _where(filters: Filters, prefix: str | None = None) -> tuple[str, list[Any]]:
    clauses: list[str] = [prefix] if prefix else []
    args: list[Any] = []
    f = filters
    if f.status:
        clauses.append(f"e.status IN ({','.join('?' * len(f.status))})")
        args.extend(f.status)
    if f.tags:
        tags = sorted(set(f.tags))
        marks = ",".join("?" * len(tags))
        if f.tags_match == "any":
            clauses.append(f"e.id IN (SELECT id FROM tags WHERE tag IN ({marks}))")
        else:
            clauses.append(
                f"(SELECT count(*) FROM tags t WHERE t.id = e.id AND t.tag IN ({marks})) = ?"
            )
            args.extend(tags)
            args.append(len(tags))
            tags = []
        args.extend(tags)
    if f.branch is not None:
        clauses.append("e.branch = ?")
        args.append(f.branch)
    if f.name is not None:
        # A sweep run is named <experiment>/<configuration>: a glob may match either part.
        clauses.append(
            "(fnmatch(?, e.name) OR (e.sweep_id IS NOT NULL AND ("
            "fnmatch(?, json_extract(e.record, '$.sweep.config_name')) OR "
            "fnmatch(?, json_extract(e.record, '$.sweep.experiment')))))"
        )
        args.extend([f.name] * 3)
    for key, value in (f.params or {}).items():
        clauses.append("param_eq(e.params, ?, ?)")
        args.extend([key, json.dumps(value)])
    if f.since is not None:
        clauses.append("e.created_ts >= ?")
        args.append(f.since)
    if f.sweep_id is not None:
        clauses.append("e.sweep_id = ?")
        args.append(f.sweep_id)
    if f.parent is not None:
        clauses.append("e.parent = ?")
        args.append(f.parent)
    if f.code_commits is not None:
        commits = sorted(set(f.code_commits))
        if not commits:
            clauses.append("0")
        else:
            clauses.append("e.code_commit IN (SELECT value FROM json_each(?))")
            args.append(json.dumps(commits))
    if f.ids is not None:
        clauses.append("e.id IN (SELECT value FROM json_each(?))")
        args.append(json.dumps(list(f.ids)))
    for sql, extra_args in f.extra:
        clauses.append(sql)
        args.extend(extra_args)
    return (("WHERE " + " AND ".join(clauses)) if clauses else ""), args
