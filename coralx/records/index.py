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
import json
import math
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .query import facts, order_sql, parse_time, sql_match

if TYPE_CHECKING:
    from .query import Filter, SortKey

__all__ = ["INDEX_FILE", "Index", "file_stamp", "parse_time"]

INDEX_FILE = "index.sqlite"
# 4: typed params (table params) and start/end times, for filters that read no JSON.
# 5: the record JSON apart (table records), so that the experiments rows a filter visits are
#    small; the params indexes cover the kind a filter tests.
SCHEMA = 5
BUSY_TIMEOUT_MS = 60_000
WAL_CHECKPOINT_PAGES = 4000  # see Index._setup
_MISSING = object()

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ts REAL,
    started_ts REAL,
    ended_ts REAL,
    branch TEXT,
    code_commit TEXT,
    parent TEXT,
    sweep_id TEXT,
    host TEXT,
    pid INTEGER,
    pid_start INTEGER,
    lease_until REAL,
    commit_hash TEXT,
    revision INTEGER NOT NULL,
    stamp TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    params TEXT NOT NULL,
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
CREATE TABLE IF NOT EXISTS params (
    id TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    num REAL,
    text TEXT,
    PRIMARY KEY (id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS params_num ON params(key, kind, num);
CREATE INDEX IF NOT EXISTS params_text ON params(key, kind, text);
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
CREATE INDEX IF NOT EXISTS metrics_max ON metrics(name, max DESC);
CREATE INDEX IF NOT EXISTS metrics_last ON metrics(name, last_finite);
CREATE INDEX IF NOT EXISTS metrics_last_desc ON metrics(name, last_finite DESC);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT
);
"""

_EXP_COLUMNS = (
    "id, name, status, created_ts, started_ts, ended_ts, branch, code_commit, parent, "
    "sweep_id, host, pid, pid_start, lease_until, commit_hash, revision, stamp"
)
_TABLES = ("experiments", "records", "tags", "params", "metrics", "meta")
_ROW_TABLES = ("experiments", "records", "tags", "params", "metrics")  # a run's rows


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
        conn.create_function("coralx_match", 2, sql_match, deterministic=True)
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
        # A checkpoint (at the commit that crosses this many WAL pages) costs two fsyncs, paid
        # by the writer inside its commit: by `end()` for a tracked run. A run's row touches
        # about 30 pages, so SQLite's default of 1,000 meant two fsyncs every 30 runs; 4,000
        # (a WAL of at most 16 MiB) makes them a quarter as many for the same bytes written.
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version < SCHEMA:
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Again, inside the transaction: another process may have just set it up.
                (version,) = conn.execute("PRAGMA user_version").fetchone()
                if 0 < version < SCHEMA:  # an older layout: the index is derived, rebuild it
                    for table in _TABLES:
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
        rows = _rows_of(
            item for eid, item in items.items() if _revision(item[0]) >= stored.get(eid, -1)
        )
        if not rows[0]:
            return 0
        conn.executemany(_UPSERT_SQL, rows[0])
        conn.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?)", rows[1])
        # Only a run that had a row can have rows in the child tables (a row and its
        # children are written in one transaction): a run indexed for the first time, as
        # most are when its rows wait for the end of the run, has nothing to delete.
        ids = [(row[0],) for row in rows[0] if row[0] in stored]
        if ids:
            for table in ("tags", "params", "metrics"):
                conn.executemany(f"DELETE FROM {table} WHERE id = ?", ids)
        _insert_children(conn, rows)
        return len(rows[0])

    def bulk_load(
        self, items: Iterable[tuple[dict[str, Any], str, str]], batch: int = 5000,
        progress: Callable[[int], None] | None = None,
    ) -> int:  # fmt: skip
        """Index many records into this index while it is empty (a store written in bulk):
        batches of plain inserts, one transaction each, secondary indexes built once at the
        end. Returns the count. ``reindex`` builds a new file instead (:meth:`rebuild`)."""
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM experiments LIMIT 1").fetchone() is not None:
                raise ValueError("bulk_load needs an empty index")
            for name in _index_names():
                conn.execute(f"DROP INDEX IF EXISTS {name}")
        done = 0
        try:
            for chunk in _batches(items, batch):
                with self._write() as conn:
                    done += _insert(conn, chunk)
                if progress is not None:
                    progress(done)
        finally:
            with self._write() as conn:
                _create_indexes(conn)
        return done

    def remove(self, experiment_id: str) -> None:
        with self._write() as conn:
            for table in _ROW_TABLES:
                conn.execute(f"DELETE FROM {table} WHERE id = ?", (experiment_id,))

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
        rows = self._read("SELECT record FROM records WHERE id = ?", (experiment_id,))
        return json.loads(rows[0][0]) if rows else None

    def running(self) -> list[tuple[str, str | None, int | None, int | None, float | None]]:
        """(id, host, pid, pid_start, lease_until) of every run indexed as running."""
        return self._read(
            "SELECT id, host, pid, pid_start, lease_until FROM experiments WHERE status = ?",
            ("running",),
        )

    def count(self) -> int:
        return int(self._read("SELECT count(*) FROM experiments")[0][0])

    def count_rows(self, sql: str, args: Sequence[Any]) -> int:
        """The answer of a ``SELECT count(*)`` (how a filter picks the test to drive it)."""
        return int(self._read(sql, args)[0][0])

    def select(
        self,
        where: Filter,
        *,
        sort: Sequence[SortKey] = (),
        limit: int | None = None,
        offset: int = 0,
        columns: str = "r.record",
        now: float | None = None,
    ) -> list[Any]:
        """Rows of ``columns`` for the runs matching ``where``, ordered by ``sort`` (runs
        without a value last), then newest first. ``now`` is the time running runs'
        durations are measured to; ``columns`` may read ``e`` (experiments) and ``r``
        (records)."""
        now = time.time() if now is None else now
        source, cond, args = where.source(now, count=self.count_rows)
        order, order_args = order_sql(sort, now)
        # CROSS JOIN: the filter picks the runs (e), their records are read for those alone.
        sql = (
            f"SELECT {columns} FROM {source} CROSS JOIN records r ON r.id = e.id "
            f"WHERE {cond} ORDER BY {order}"
        )
        args = [*args, *order_args]
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            args.extend([-1 if limit is None else int(limit), int(offset)])
        return self._read(sql, args)

    def best(
        self,
        metric: str,
        where: Filter,
        *,
        mode: str = "min",
        by: str = "best",
        limit: int | None = None,
    ) -> list[tuple[str, float, int]]:
        """(record JSON, value, count) of the runs with the best value of ``metric``: SQLite
        walks ``metrics_min``/``metrics_max`` in order and stops after ``limit`` matches."""
        col = "m.min" if mode == "min" else "m.max"
        if by == "last":
            col = "m.last_finite"
        direction = "ASC" if mode == "min" else "DESC"
        cond, args = where.sql(style="exists")
        sql = (
            # CROSS JOIN keeps metrics the outer loop: SQLite walks (name, value) in order and
            # stops after `limit` matches, instead of sorting every run the filter keeps.
            f"SELECT r.record, {col}, m.count FROM metrics m CROSS JOIN experiments e "
            "ON e.id = m.id CROSS JOIN records r ON r.id = e.id "
            # Ties by id (m.id = e.id): the metric indexes end with the id, so the walk needs
            # no sort (ordering by e.id instead made SQLite sort every tie group).
            f"WHERE m.name = ? AND {col} IS NOT NULL AND {cond} ORDER BY {col} {direction}, m.id"
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

    def rebuild(
        self,
        folder: Path,
        load: Callable[[Path], tuple[dict[str, Any], str] | str | None],
        progress: Callable[[int, int], None] | None = None,
        workers: int | None = None,
    ) -> dict[str, Any]:
        """Index every record in ``folder`` into a new index file, then put it in place of
        this one (``coralx reindex``). The old index answers queries until the rename, and a
        reindex killed before it leaves the old index as it was.

        ``load(path)`` gives ``(record, text)``, the reason a damaged record cannot be read,
        or None for a file gone meanwhile; it must be a module-level function, because
        ``workers`` processes (by default one per core, none for a small store) read and
        parse the records while this one inserts their rows. The new file is written the
        fast way a file nobody else has open can be: no journal, no syncs until it is
        complete, plain inserts in id order, secondary indexes built at the end. A record
        that cannot be read keeps its row from the old index, the copy ``coralx fsck
        --repair`` restores it from: their ids are ``recoverable``."""
        started = time.time()
        folder_mtime = str(folder.stat().st_mtime_ns)
        names = sorted(
            n for n in os.listdir(folder) if n.endswith(".json") and not n.startswith(".")
        )
        if workers is None:
            workers = (os.cpu_count() or 1) if len(names) >= PARALLEL_FROM else 0
        self._remove_dead_builds()
        from .._fs import temp_name

        tmp = temp_name(self.path)
        total = len(names)
        done = 0
        failed: dict[str, str] = {}
        try:
            conn = _new_file(tmp)
            try:
                for rows, bad in _read_chunks(folder, names, load, workers):
                    done += _insert_rows(conn, rows)
                    failed.update(bad)
                    if progress is not None:
                        progress(done, total)
                copies = self._copies(list(failed))
                _insert(conn, [(rec, text, "damaged") for rec, text in copies.values()])
                if started - int(folder_mtime) / 1e9 > 2.0:  # settled: see `sync`
                    conn.execute(
                        "INSERT INTO meta (key, value) VALUES ('folder_mtime', ?)", (folder_mtime,)
                    )
                _finish_new(conn)
            finally:
                conn.close()
            self._put_in_place(tmp)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return {
            "indexed": done,
            "removed": 0,
            "unreadable": len(failed),
            "unreadable_files": list(failed.values()),
            "recoverable": sorted(copies),
        }

    def _copies(self, ids: Sequence[str]) -> dict[str, tuple[dict[str, Any], str]]:
        """(record, JSON) of each of ``ids`` this index holds: the last readable copies of
        records that are damaged on disk."""
        if not ids:
            return {}
        try:
            rows = self._read(
                "SELECT id, record FROM records WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(ids)),),
            )
        except sqlite3.Error:
            return {}
        return {eid: (json.loads(text), text) for eid, text in rows}

    def _remove_dead_builds(self) -> None:
        from .. import _fs

        prefix = f"{_fs.TEMP_PREFIX}{self.path.name}."
        for leftover in self.path.parent.glob(f"{prefix}*"):
            if not _fs.temp_writer_alive(leftover.name):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()

    def _put_in_place(self, new: Path) -> None:
        """Rename the complete index file ``new`` over this one, and use it."""
        from .._fs import FileLock, fsync_dir

        with self._lock:
            with FileLock(self.path.with_name(self.path.name + ".lock"), timeout=60):
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                os.replace(new, self.path)
                # The old file's log and shared memory go with it: a process that still has
                # the old file open writes into those until it notices the new file (at its
                # next use), never into a log the new file would read.
                for suffix in ("-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path.with_name(self.path.name + suffix))
                fsync_dir(self.path.parent)
            self._conn = self._connect()

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


def _index_names() -> list[str]:
    return [
        st.split(" ON ")[0].split()[-1] for st in _SCHEMA_SQL.split(";") if "CREATE INDEX" in st
    ]


def _create_indexes(conn: sqlite3.Connection) -> None:
    # CREATE INDEX IF NOT EXISTS: the schema's own statements.
    for statement in _SCHEMA_SQL.split(";"):
        if "CREATE INDEX" in statement:
            conn.execute(statement)


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


_INSERT_EXP = f"INSERT INTO experiments ({_EXP_COLUMNS}) VALUES ({','.join('?' * 17)})"

# The rows of a batch of records, table by table: experiments, records, tags, params, metrics.
_Rows = tuple[list[tuple[Any, ...]], ...]


def _rows_of(items: Iterable[tuple[dict[str, Any], str, str]]) -> _Rows:
    rows: _Rows = ([], [], [], [], [])
    for rec, text, stamp in items:
        row, more = index_rows(rec, text, stamp)
        rows[0].append(row)
        rows[1].append(more["records"][0])
        rows[2].extend(more["tags"])
        rows[3].extend(more["params"])
        rows[4].extend(more["metrics"])
    return rows


def _insert_children(conn: sqlite3.Connection, rows: _Rows) -> None:
    conn.executemany("INSERT OR IGNORE INTO tags (tag, id) VALUES (?, ?)", rows[2])
    conn.executemany("INSERT INTO params VALUES (?, ?, ?, ?, ?)", rows[3])
    conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?)", rows[4])


def _insert_rows(conn: sqlite3.Connection, rows: _Rows) -> int:
    """Plain inserts (records not in the index yet)."""
    conn.executemany(_INSERT_EXP, rows[0])
    conn.executemany("INSERT INTO records VALUES (?, ?, ?)", rows[1])
    _insert_children(conn, rows)
    return len(rows[0])


def _insert(conn: sqlite3.Connection, items: Sequence[tuple[dict[str, Any], str, str]]) -> int:
    return _insert_rows(conn, _rows_of(items))


# Below this many record files `rebuild` reads them itself: starting processes costs more.
PARALLEL_FROM = 20_000
_CHUNK = 5000


def _read_chunk(
    folder: Path, names: Sequence[str], load: Callable[[Path], Any]
) -> tuple[_Rows, dict[str, str]]:
    """The index rows of the record files ``names``, and {id: reason} of those that cannot be
    read (a file deleted meanwhile is neither)."""
    import gc

    items: list[tuple[dict[str, Any], str, str]] = []
    bad: dict[str, str] = {}
    # Parsed records hold no reference cycles: collecting while thousands of them are being
    # built only costs time.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _read_names(folder, names, load, items, bad)
    finally:
        if collecting:
            gc.enable()


def _read_names(
    folder: Path,
    names: Sequence[str],
    load: Callable[[Path], Any],
    items: list[tuple[dict[str, Any], str, str]],
    bad: dict[str, str],
) -> tuple[_Rows, dict[str, str]]:
    for name in names:
        path = folder / name
        try:
            stamp = file_stamp(path.stat())
        except FileNotFoundError:
            continue
        loaded = load(path)
        if isinstance(loaded, str):
            bad[name[:-5]] = loaded
        elif loaded is not None:
            items.append((loaded[0], loaded[1], stamp))
    return _rows_of(items), bad


def _read_chunks(
    folder: Path, names: Sequence[str], load: Callable[[Path], Any], workers: int
) -> Iterator[tuple[_Rows, dict[str, str]]]:
    """:func:`_read_chunk` of ``names`` a chunk at a time, in order; with ``workers``
    processes reading ahead (at most two chunks each, so memory stays bounded)."""
    chunks = [names[i : i + _CHUNK] for i in range(0, len(names), _CHUNK)]
    # Forked workers: they start at once and need no importable __main__ (spawn would run
    # a user's script again). They run only this module's code, which takes no lock another
    # thread of this process may hold. Where fork is not the way (macOS, Windows): in here.
    if workers <= 0 or len(chunks) < 2 or sys.platform != "linux":
        for chunk in chunks:
            yield _read_chunk(folder, chunk, load)
        return
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        ahead: deque[Any] = deque()
        try:
            for chunk in chunks:
                ahead.append(pool.submit(_read_chunk, folder, chunk, load))
                if len(ahead) > 2 * workers:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()
        finally:  # stopped early (an error while inserting): drop the chunks not started
            for future in ahead:
                future.cancel()


# Page cache of a new index file while it is built (KiB): its B-trees stay in memory.
BUILD_CACHE_KIB = 256 * 1024


def _new_file(path: Path) -> sqlite3.Connection:
    """A connection to a new, empty index file only this process knows of: no journal, no
    syncs (it is synced once, complete, before it is renamed into place)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # threads: the sorts that build the secondary indexes at the end use every core.
    threads = min(4, os.cpu_count() or 1)
    for pragma in ("journal_mode = OFF", "synchronous = OFF", "locking_mode = EXCLUSIVE",
                   f"cache_size = -{BUILD_CACHE_KIB}", "temp_store = MEMORY",
                   f"threads = {threads}"):  # fmt: skip
        conn.execute(f"PRAGMA {pragma}")
    for statement in _SCHEMA_SQL.split(";"):
        if statement.strip() and "CREATE INDEX" not in statement:
            conn.execute(statement)
    conn.execute("BEGIN")
    return conn


def _finish_new(conn: sqlite3.Connection) -> None:
    """Build the secondary indexes, commit, switch to WAL (as every open expects) and sync."""
    _create_indexes(conn)
    conn.execute(f"PRAGMA user_version = {SCHEMA}")
    conn.execute("COMMIT")
    conn.execute("PRAGMA locking_mode = NORMAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    fd = os.open(conn.execute("PRAGMA database_list").fetchone()[2], os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _inode(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return -1


def index_rows(
    rec: dict[str, Any], text: str, stamp: str
) -> tuple[tuple[Any, ...], dict[str, list[tuple[Any, ...]]]]:
    """The experiments row of one record and its tags, params and metrics rows: the values of
    :func:`coralx.records.query.facts`, so SQL filters read what in-memory filters read."""
    f = facts(rec)
    eid = f.id
    a = f.attrs
    params = rec.get("params_json")
    if params is None:
        params = json.dumps(rec.get("params") or {}, sort_keys=True)
    row = (eid, a["name"], a["status"], a["created"], f.started, f.ended, a["branch"],
           a["commit"], a["parent"], a["sweep"], rec.get("host"), rec.get("pid"),
           rec.get("pid_start"), rec.get("lease_until"), rec.get("commit_hash"),
           _revision(rec), stamp)  # fmt: skip
    ptypes = [
        (eid, key, kind, None if kind == "s" else value, value if kind == "s" else None)
        for key, (kind, value) in f.params.items()
    ]
    metrics = []
    for name, s in (rec.get("metrics_summary") or {}).items():
        last = _num(s.get("last"))
        metrics.append(
            (name, eid, last, _finite(last), _num(s.get("min")), _num(s.get("max")),
             int(s.get("count") or 0))
        )  # fmt: skip
    return row, {"records": [(eid, params, text)], "tags": [(t, eid) for t in f.tags],
                 "params": ptypes, "metrics": metrics}  # fmt: skip
