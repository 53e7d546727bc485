"""Reading MLflow's two local backends straight from disk, without mlflow installed.

* A **FileStore** folder (``mlruns/``): ``<experiment id>/meta.yaml`` names an experiment;
  ``<experiment id>/<run id>/`` holds ``meta.yaml`` (run id, name, status, times, artifact
  URI), ``params/<key>`` and ``tags/<key>`` (the value is the file's text; a key with ``/`` is
  a nested path), ``metrics/<key>`` (one ``timestamp value step`` line per value, older
  files without the step) and ``artifacts/``. Deleted experiments sit in ``.trash/``.
* A **SQLite** database (``sqlite:///mlflow.db``): the tables ``experiments``, ``runs``,
  ``params``, ``tags`` and ``metrics``, whose layout is fixed by the Alembic revision in
  ``alembic_version``. Only the revisions of :data:`KNOWN_REVISIONS` (MLflow 2.0 to 3.17)
  are read; any other is refused before anything is imported, and the columns read are
  checked as well.

Everything read here is text and numbers: no file in the source is ever unpickled.

>>> source = open_source("sqlite:///mlflow.db")
>>> for run in source.runs(): print(run.run_id, run.name, len(run.metrics))
"""

from __future__ import annotations

import abc
import math
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ..errors import ImportSourceError

__all__ = ["KNOWN_REVISIONS", "FileStoreSource", "MlflowRun", "SqliteSource", "open_source"]

# The Alembic revisions of MLflow's tracking schema, oldest first, from MLflow 2.0
# (cc1f77228345: params up to 500 characters) to MLflow 3.17 (dc11669786a5). Every one has
# the columns read below; a database at a revision not listed is refused.
KNOWN_REVISIONS = (
    "cc1f77228345", "97727af70f4d", "3500859a5d39", "7f2a7d5fae7d", "2d6e25af4d3e",
    "acf3f17fdcc7", "867495a8f9d4", "5b0e9adcef9c", "4465047574b1", "f5a4f2784254",
    "0584bdc529eb", "400f98739977", "6953534de441", "bda7b8c39065", "cbc13b556ace",
    "770bee3ae1dd", "a1b2c3d4e5f6", "de4033877273", "1a0cddfcaa16", "534353b11cbc",
    "71994744cf8e", "3da73c924c2f", "bf29a5ff90ea", "1bd49d398cd23", "b7c8d9e0f1a2",
    "5d2d30f0abce", "c9d4e5f6a7b8", "2c33131f4dae", "d3e4f5a6b7c8", "d0e1f2a3b4c5",
    "c8d9e0f1a2b3", "1b5f0d9ad7c1", "e1f2a3b4c5d6", "76601a5f987d", "c3d6457b6d8a",
    "a5b4c3d2e1f0", "ae8bbe7743c9", "7d34483879f0", "da6fb0208061", "89d3d66ed43f",
    "b7e4c1a90f23", "a8b9c0d1e2f3", "c1d2e3f4a5b6", "c3d9e7f1a2b4", "6f8d9c3b2a1e",
    "1971f2d9a75b", "17e22815139b", "b7e2c1a4d9f3", "75868b020152", "dc11669786a5",
)  # fmt: skip

_COLUMNS = {
    "experiments": {"experiment_id", "name"},
    "runs": {
        "run_uuid", "name", "status", "start_time", "end_time", "lifecycle_stage",
        "artifact_uri", "experiment_id", "user_id",
    },
    "params": {"key", "value", "run_uuid"},
    "tags": {"key", "value", "run_uuid"},
    "metrics": {"key", "value", "timestamp", "run_uuid", "step", "is_nan"},
}  # fmt: skip

# FileStore's meta.yaml stores the status as the number of MLflow's RunStatus enum.
_FILE_STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}


@dataclass
class MlflowRun:
    """One MLflow run as read from the source; times are milliseconds since the epoch and
    ``metrics`` are ``(key, value, step, timestamp)`` rows in logging order."""

    run_id: str
    experiment_id: str
    experiment_name: str
    name: str
    status: str
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str
    artifact_uri: str
    user: str | None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)
    artifact_dir: Path | None = None


class MlflowSource(abc.ABC):
    """A readable MLflow backend: :meth:`run_ids` is cheap (for the progress bar),
    :meth:`read_run` reads one run whole."""

    location: str

    @abc.abstractmethod
    def run_ids(self) -> list[str]:
        """Every run id in the source, live and deleted, in a stable order."""

    @abc.abstractmethod
    def read_run(self, run_id: str) -> MlflowRun:
        """One run with its params, tags and metric history."""

    def runs(self) -> Iterator[MlflowRun]:
        for run_id in self.run_ids():
            yield self.read_run(run_id)

    def close(self) -> None:  # noqa: B027 - a source without resources needs nothing
        """Release what the source holds open."""


def open_source(source: str | os.PathLike[str]) -> MlflowSource:
    """The source ``source`` names: ``sqlite:///path.db`` (or a path to a SQLite file) or an
    MLflow FileStore folder (``mlruns/``, or ``file:///.../mlruns``). Anything else, or a
    database at an unknown schema version, raises :class:`ImportSourceError` at once."""
    text = os.fspath(source)
    if text.startswith("sqlite:"):
        if not text.startswith("sqlite:///"):
            raise ImportSourceError(text, "a SQLite URI looks like sqlite:///path/to/mlflow.db")
        return SqliteSource(Path(unquote(text[len("sqlite:///") :])), text)
    if text.startswith("file:"):
        text = unquote(urlparse(text).path)
    elif "://" in text:
        raise ImportSourceError(
            text, "only a local FileStore folder or a sqlite:/// database can be imported"
        )
    path = Path(text).expanduser()
    if not path.exists():
        raise ImportSourceError(text, "there is no such file or folder")
    if path.is_file():
        return SqliteSource(path, text)
    return FileStoreSource(path)


# -- the FileStore ------------------------------------------------------------------------------


class FileStoreSource(MlflowSource):
    """An MLflow FileStore folder (see the module docstring for its layout)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.location = str(self.root)
        self._experiments = self._read_experiments()
        self._runs: dict[str, tuple[Path, str]] = {}
        for exp_dir, name in self._experiments.values():
            for meta in sorted(exp_dir.glob("*/meta.yaml")):
                self._runs[meta.parent.name] = (meta.parent, name)

    def _read_experiments(self) -> dict[str, tuple[Path, str]]:
        found: dict[str, tuple[Path, str]] = {}
        for folder in (self.root, self.root / ".trash"):
            for meta in sorted(folder.glob("*/meta.yaml")):
                doc = _yaml(meta)
                if "experiment_id" in doc and "name" in doc:
                    found[str(doc["experiment_id"])] = (meta.parent, str(doc["name"]))
        if not found:
            raise ImportSourceError(
                self.location,
                "it is not an MLflow FileStore folder: no <experiment>/meta.yaml in it "
                "(give the mlruns/ folder itself)",
            )
        return found

    def run_ids(self) -> list[str]:
        return list(self._runs)

    def read_run(self, run_id: str) -> MlflowRun:
        folder, experiment_name = self._runs[run_id]
        meta_path = folder / "meta.yaml"
        meta = _yaml(meta_path)
        try:
            rid = str(meta.get("run_id") or meta["run_uuid"])
            status = meta["status"]
            status = _FILE_STATUS.get(status, str(status)) if isinstance(status, int) else status
            tags = _key_files(folder / "tags")
            run = MlflowRun(
                run_id=rid,
                experiment_id=str(meta["experiment_id"]),
                experiment_name=experiment_name,
                name=str(meta.get("run_name") or tags.get("mlflow.runName") or rid),
                status=str(status),
                start_time=_int_or_none(meta.get("start_time")),
                end_time=_int_or_none(meta.get("end_time")),
                lifecycle_stage=str(meta.get("lifecycle_stage") or "active"),
                artifact_uri=str(meta.get("artifact_uri") or ""),
                user=meta.get("user_id"),
                params=_key_files(folder / "params"),
                tags=tags,
                metrics=self._metrics(folder / "metrics"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ImportSourceError(
                str(meta_path), f"the run's files are unreadable: {exc}"
            ) from None
        # Where MLflow put them; else the run's own folder (an mlruns/ moved since).
        local = folder / "artifacts"
        run.artifact_dir = _local_dir(run.artifact_uri, self.root) or (
            local if local.is_dir() else None
        )
        return run

    @staticmethod
    def _metrics(folder: Path) -> list[tuple[str, float, int, int]]:
        rows: list[tuple[str, float, int, int]] = []
        for key, path in _key_paths(folder):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) not in (2, 3):
                    raise ValueError(f"{path}, line {number}: {line!r} is not 'time value step'")
                step = int(parts[2]) if len(parts) == 3 else 0
                rows.append((key, float(parts[1]), step, int(parts[0])))
        rows.sort(key=lambda r: (r[3], r[2]))  # logging order across keys, stable within one
        return rows


def _key_paths(folder: Path) -> list[tuple[str, Path]]:
    """(key, file) for every file below ``folder``; a key with ``/`` is a nested path."""
    if not folder.is_dir():
        return []
    out = []
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(dirpath) / name
            out.append((path.relative_to(folder).as_posix(), path))
    return sorted(out)


def _key_files(folder: Path) -> dict[str, str]:
    return {key: path.read_text(encoding="utf-8") for key, path in _key_paths(folder)}


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    # libyaml's safe loader when PyYAML was built with it: the pure-Python one takes 15 ms
    # a file, most of an import's time. Both construct plain data only.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ImportSourceError(str(path), f"it is not readable YAML: {exc}") from None
    return doc if isinstance(doc, dict) else {}


def _int_or_none(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def _local_dir(uri: str, base: Path) -> Path | None:
    """The local folder an artifact URI names, or None when it is remote (s3://, ...)."""
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
    elif parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        path = Path(uri) if Path(uri).is_absolute() else base / uri
    else:
        return None
    return path if path.is_dir() else None


# -- the SQLite database ------------------------------------------------------------------------


class SqliteSource(MlflowSource):
    """An MLflow SQLite database, opened read-only; its schema revision is checked first."""

    def __init__(self, path: Path, location: str) -> None:
        self.path = path.expanduser().resolve()
        self.location = location
        if not self.path.is_file():
            raise ImportSourceError(location, "there is no such database file")
        with open(self.path, "rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                raise ImportSourceError(location, "it is neither a SQLite database nor a folder")
        self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            self._check_schema()
        except BaseException:
            self.db.close()
            raise

    def _check_schema(self) -> None:
        tables = {
            r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if "alembic_version" not in tables or "runs" not in tables:
            raise ImportSourceError(self.location, "it is a SQLite database, but not MLflow's")
        versions = [r[0] for r in self.db.execute("SELECT version_num FROM alembic_version")]
        if len(versions) != 1 or versions[0] not in KNOWN_REVISIONS:
            raise ImportSourceError(
                self.location,
                f"its MLflow schema revision {', '.join(versions) or 'none'} is not one coralx "
                f"knows (it reads {KNOWN_REVISIONS[0]} to {KNOWN_REVISIONS[-1]}, MLflow 2.0 "
                "to 3.17); upgrade coralx, or export the runs with that MLflow's own tools",
            )
        for table, wanted in _COLUMNS.items():
            have = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
            if not wanted <= have:
                missing = ", ".join(sorted(wanted - have))
                raise ImportSourceError(self.location, f"its table {table} lacks {missing}")

    def run_ids(self) -> list[str]:
        rows = self.db.execute("SELECT run_uuid FROM runs ORDER BY start_time, run_uuid")
        return [r[0] for r in rows]

    def read_run(self, run_id: str) -> MlflowRun:
        row = self.db.execute(
            "SELECT r.run_uuid, r.experiment_id, e.name, r.name, r.status, r.start_time, "
            "r.end_time, r.lifecycle_stage, r.artifact_uri, r.user_id FROM runs r "
            "LEFT JOIN experiments e ON e.experiment_id = r.experiment_id WHERE r.run_uuid = ?",
            (run_id,),
        ).fetchone()
        run = MlflowRun(
            run_id=row[0],
            experiment_id=str(row[1]),
            experiment_name=str(row[2] or row[1]),
            name=row[3] or row[0],
            status=str(row[4]),
            start_time=row[5],
            end_time=row[6],
            lifecycle_stage=row[7] or "active",
            artifact_uri=row[8] or "",
            user=row[9],
        )
        run.params = dict(
            self.db.execute("SELECT key, value FROM params WHERE run_uuid = ?", (run_id,))
        )
        run.tags = dict(
            self.db.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,))
        )
        metrics = self.db.execute(
            "SELECT key, value, step, timestamp, is_nan FROM metrics WHERE run_uuid = ? "
            "ORDER BY timestamp, step, rowid",
            (run_id,),
        )
        run.metrics = [
            (k, math.nan if nan else float(v), int(s), int(t)) for k, v, s, t, nan in metrics
        ]
        run.artifact_dir = _local_dir(run.artifact_uri, self.path.parent)
        return run

    def close(self) -> None:
        self.db.close()
