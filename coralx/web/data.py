"""Everything the viewer shows, read from one store: runs, metric series, media, lineage,
code snapshots, sweeps and weights.

This is the only module of ``coralx.web`` that touches the store, and it only reads. Pages
and the JSON API (``app.py``) call it; it returns plain dicts and numpy arrays.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ArtifactNotFound, InvalidValue, NotFound
from ..ids import is_hex
from ..records.media import FIGURE_KIND, FIGURE_KINDS, TEXT_KIND
from .downsample import minmax_downsample
from .records import RecordCache, RunQuery

if TYPE_CHECKING:
    import numpy as np

    from ..repository import Repository

__all__ = ["RunQuery", "ViewerData"]


class ViewerData:
    """Read-only access to one store for the viewer.

    >>> from coralx import Repository
    >>> data = ViewerData(Repository.discover())
    >>> page = data.runs(RunQuery(tags=["bert"], limit=20))
    """

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.records = RecordCache(repo.path)
        self._series: dict[tuple[str, str], tuple[Any, tuple[np.ndarray, np.ndarray]]] = {}
        self._journals: dict[str, _Journal] = {}
        self._series_lock = threading.Lock()

    # -- runs -----------------------------------------------------------------------------

    def runs(self, query: RunQuery, metrics: list[str] | None = None) -> dict[str, Any]:
        page = self.records.query(query, metrics or ())
        page["tags"] = self.records.tags()
        return page

    def run(self, id_or_prefix: str) -> dict[str, Any]:
        """A run's record with what the run page derives from it."""
        record = self.records.get(id_or_prefix)
        row = self.records.row(record["experiment_id"])
        out = dict(record)
        out["duration"] = row.duration
        out["stale"] = row.to_dict()["stale"]
        out["metric_names"] = self.metric_names(record["experiment_id"])
        out["media"] = self.media(record)
        out["lineage"] = self.lineage(record["experiment_id"])
        return out

    # -- metrics ----------------------------------------------------------------------------

    def series(self, run_id: str, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The full history of one metric as (steps, values) arrays, cached while the
        journal is unchanged."""
        record = self.records.get(run_id)
        run_id = record["experiment_id"]
        journal = self._journal(run_id)
        if name not in (record.get("metrics_summary") or {}) and name not in journal.names:
            raise NotFound(f"run {run_id} has no metric {name!r}")
        key = (run_id, name)
        with self._series_lock:
            cached = self._series.get(key)
        if cached is not None and cached[0] is journal:
            return cached[1]
        arrays = _select(journal, name)
        with self._series_lock:
            if len(self._series) > 256:
                self._series.clear()
            self._series[key] = (journal, arrays)
        return arrays

    def metric_names(self, run_id: str) -> list[str]:
        """Metrics in the record's summary and in the journal (a running run's new metrics
        are in the journal before the record is rewritten)."""
        record = self.records.get(run_id)
        names = dict.fromkeys(record.get("metrics_summary") or {})
        names.update(dict.fromkeys(self._journal(record["experiment_id"]).names))
        return sorted(names)

    def _journal(self, run_id: str) -> _Journal:
        """The run's metric journal, read once per version of the file."""
        path = self.repo.path / "experiments" / f"{run_id}.metrics"
        try:
            st = path.stat()
            version: Any = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            version = None
        with self._series_lock:
            cached = self._journals.get(run_id)
        if cached is not None and cached.version == version:
            return cached
        journal = _Journal(version, path if version is not None else None)
        with self._series_lock:
            if len(self._journals) > 16:
                self._journals.clear()
            self._journals[run_id] = journal
        return journal

    def metric(self, run_id: str, name: str, points: int = 2000) -> dict[str, Any]:
        """One metric for a chart: at most about ``2 * points`` points, extremes kept."""
        import numpy as np

        if not 1 <= points <= 100_000:
            raise InvalidValue("points must be between 1 and 100000")
        steps, values = self.series(run_id, name)
        x, y = minmax_downsample(steps, values, buckets=points)
        finite = np.isfinite(y)
        y_list: list[Any] = y.tolist()
        if not finite.all():
            # JSON has no NaN: send null, which Plotly draws as a gap.
            y_list = [v if ok else None for v, ok in zip(y_list, finite.tolist())]
        return {
            "name": name,
            "total": len(values),
            "downsampled": len(x) < len(values),
            "steps": x.tolist(),
            "values": y_list,
        }

    # -- media --------------------------------------------------------------------------------

    @staticmethod
    def media(record: Mapping[str, Any]) -> dict[str, Any]:
        """Texts and figures grouped by tag, in step order; other artifacts as a list."""
        texts: dict[str, list[dict[str, Any]]] = {}
        figures: dict[str, dict[Any, dict[str, Any]]] = {}
        files: list[dict[str, Any]] = []
        for art in record.get("artifacts") or []:
            kind = art.get("kind")
            entry = {"step": art.get("step"), "blob": art.get("blob"), "size": art.get("size")}
            if kind == TEXT_KIND:
                texts.setdefault(str(art.get("name")), []).append(entry)
            elif kind in FIGURE_KINDS:
                by_step = figures.setdefault(str(art.get("name")), {})
                fig = by_step.setdefault(
                    art.get("step"),
                    {"step": art.get("step"), "interactive": kind == FIGURE_KIND, "formats": {}},
                )
                fig["formats"][str(art.get("media_type"))] = art.get("blob")
            else:
                files.append({**art})
        return {
            "texts": {tag: sorted(v, key=_step_key) for tag, v in sorted(texts.items())},
            "figures": {
                tag: sorted(v.values(), key=_step_key) for tag, v in sorted(figures.items())
            },
            "files": files,
        }

    def artifact(self, run_id: str, blob_id: str) -> tuple[bytes, str, str]:
        """(bytes, media type, name) of a blob that this run's record lists."""
        record = self.records.get(run_id)
        if not (len(blob_id) == 64 and is_hex(blob_id)):
            raise ArtifactNotFound(f"no artifact {blob_id!r} in run {record['experiment_id']}")
        for art in record.get("artifacts") or []:
            if art.get("blob") == blob_id:
                from ..records.blobs import BlobStore

                data = BlobStore(self.repo).get(blob_id)
                media_type = str(art.get("media_type") or "application/octet-stream")
                return data, media_type, str(art.get("name") or blob_id)
        raise ArtifactNotFound(f"no artifact {blob_id!r} in run {record['experiment_id']}")

    # -- lineage ------------------------------------------------------------------------------

    def lineage(self, run_id: str) -> dict[str, Any]:
        """Ancestors (oldest first) and the tree of descendants of a run (the engine's walk,
        with its depth limit)."""
        from ..records import query

        rows, by_parent = self.records.family()

        def parent_of(i: str) -> str | None:
            row = rows.get(i)
            return row.parent if row is not None else None

        above = query.ancestors(run_id, parent_of)
        tree = query.descendants(run_id, lambda i: by_parent.get(i, ()))

        def dress(node: dict[str, Any]) -> dict[str, Any]:
            out = _node(rows.get(node["id"]), node["id"])
            out["children"] = [dress(k) for k in node["children"]]
            return out

        return {"ancestors": [_node(rows.get(i), i) for i in above], "tree": dress(tree)}

    # -- code -----------------------------------------------------------------------------------

    def code(self, run_id: str) -> dict[str, Any]:
        """The code a run recorded: commit, branch, dirty flag, and when a snapshot was
        stored, its files and their diff against the commit."""
        from . import code

        record = self.records.get(run_id)
        info = record.get("code") or {}
        out: dict[str, Any] = {
            "commit": info.get("commit"),
            "branch": info.get("branch") or record.get("branch"),
            "dirty": info.get("dirty"),
            "snapshot": info.get("snapshot"),
            "files": [],
            "diff": None,
        }
        snapshot = info.get("snapshot")
        if snapshot:
            root = info.get("root") if isinstance(info.get("root"), str) else None
            out.update(code.snapshot_details(self.repo, str(snapshot), info.get("commit"), root))
        return out

    # -- environment ----------------------------------------------------------------------------

    def environment(self, run_id: str) -> dict[str, Any] | None:
        """The environment a run recorded (coralx.environment), read from its blob; None when
        it recorded none."""
        from ..environment import load

        record = self.records.get(run_id)
        blob_id = record.get("environment")
        return load(self.repo, blob_id) if isinstance(blob_id, str) and blob_id else None

    def requirements(self, run_id: str) -> str:
        """A pip requirements file for the run's environment."""
        from ..environment import requirements

        record = self.records.get(run_id)
        env = self.environment(run_id)
        if env is None:
            raise ArtifactNotFound(f"run {record['experiment_id']} recorded no environment")
        return requirements(env, title=f"environment of run {record['experiment_id']}")

    # -- compare --------------------------------------------------------------------------------

    def compare(self, ids: list[str]) -> dict[str, Any]:
        """Several runs side by side: their summaries, the params that differ, and the union
        of their metric names."""
        if not ids:
            raise InvalidValue("compare needs at least one run id: ?ids=<id>,<id>")
        if len(ids) > 50:
            raise InvalidValue("compare at most 50 runs at once")
        from ..records import query

        rows = [self.records.row(i) for i in ids]
        cmp = query.compare_records([row.record for row in rows])
        run_ids = cmp["ids"]
        differ = {k: [v.get(i) for i in run_ids] for k, v in cmp["params"].items()}
        return {
            "runs": [row.to_dict(list(cmp["metrics"])) for row in rows],
            "params_differ": differ,
            "params_same": cmp["same"],
            "metrics": list(cmp["metrics"]),
            "modes": cmp["modes"],
            "best": {m: b["run"] for m, b in cmp["best"].items()},
        }

    # -- sweeps ---------------------------------------------------------------------------------

    def sweeps(self) -> list[dict[str, Any]]:
        """Every sweep that has runs in the store, newest first."""
        groups: dict[str, list[Any]] = {}
        for row in self.records.rows():
            if row.sweep_id:
                groups.setdefault(row.sweep_id, []).append(row)
        out = []
        for sweep_id, rows in groups.items():
            meta = _sweep_meta(self.repo.path, sweep_id)
            counts: dict[str, int] = {}
            for row in rows:
                counts[row.status] = counts.get(row.status, 0) + 1
            created = min((r.created for r in rows if r.created is not None), default=None)
            out.append(
                {
                    "sweep_id": sweep_id,
                    "name": meta.get("name") or _common_name(rows),
                    "runs": len(rows),
                    "statuses": counts,
                    "created": created,
                }
            )
        out.sort(key=lambda s: (s["created"] or 0, s["sweep_id"]), reverse=True)
        return out

    def sweep(self, sweep_id: str, metric: str | None = None) -> dict[str, Any]:
        """A sweep's configurations laid out by its shape, coloured by its main metric."""
        from ..records import query
        from .sweeps import sweep_layout

        all_rows = self.records.rows()
        ids = sorted({str(r.sweep_id) for r in all_rows if r.sweep_id})
        full_id = query.resolve_prefix(sweep_id, query.prefix_lookup(ids), kind="sweep id")
        rows = [r for r in all_rows if r.sweep_id == full_id]
        return sweep_layout(full_id, rows, _sweep_meta(self.repo.path, full_id), metric)

    # -- weights --------------------------------------------------------------------------------

    def weights(self) -> dict[str, Any]:
        from . import weights

        return weights.overview(self.repo)

    def weight_commit(self, rev: str) -> dict[str, Any]:
        from . import weights

        return weights.commit_details(self.repo, rev)

    def export_weights(self, rev: str, dest: Path) -> str:
        from . import weights

        return weights.export(self.repo, rev, dest)


def _node(row: Any, run_id: str) -> dict[str, Any]:
    if row is None:
        return {"id": run_id, "name": None, "status": "missing"}
    return {"id": row.id, "name": row.name, "status": row.status}


def _step_key(entry: Mapping[str, Any]) -> tuple[int, float]:
    step = entry.get("step")
    return (1, 0.0) if step is None else (0, float(step))


def _common_name(rows: list[Any]) -> str:
    names = sorted({r.name for r in rows})
    return names[0] if len(names) == 1 else f"{len(names)} configurations"


def _sweep_meta(store: Path, sweep_id: str) -> dict[str, Any]:
    """The sweep runner's own description of a sweep, when it wrote one."""
    import json

    if not (len(sweep_id) == 20 and is_hex(sweep_id)):
        return {}
    for candidate in (store / "sweeps" / f"{sweep_id}.json",):
        try:
            data = json.loads(candidate.read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return {}


class _Journal:
    """One version of a run's metric journal, as numpy columns."""

    def __init__(self, version: Any, path: Path | None) -> None:
        self.version = version
        if path is None:
            self.names: dict[str, int] = {}
            self.columns: Any = None
            return
        from ..records.journal import read_journal

        self.columns = read_journal(path)
        self.names = {name: nid for nid, name in self.columns.names.items()}


def _select(journal: _Journal, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one metric; a value logged without a step gets its index."""
    import numpy as np

    from ..records.journal import NO_STEP

    if journal.columns is None or name not in journal.names:
        return np.empty(0, dtype=np.int64), np.empty(0)
    cols = journal.columns
    mask = cols.ids == journal.names[name]
    values = cols.values[mask]
    steps = cols.steps[mask]
    missing = steps == NO_STEP
    if missing.any():
        steps = np.where(missing, np.arange(len(steps)), steps)
    return steps, values
