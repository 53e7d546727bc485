"""The handle a configuration's function receives: logging, nested data, files, weights.

>>> @coralx.experiment(name="mnist")
... def train(config: coralx.Config, run: coralx.Run) -> dict:
...     run.log("val_loss", 0.31, step=1)           # a metric (time series)
...     run["data/n_train"] = 60000                  # nested data kept in the record
...     (run.out / "notes.txt").write_text("hi")     # files recorded by content hash at the end
...     run.log_artifact("curve.png", fig)           # a path, bytes, text, JSON or a figure
...     run.commit_weights(weights, message="epoch 1")  # a weight commit linked to the run
...     return {"accuracy": 0.97}

Inside a tracked sweep every call goes to the run's experiment record through the tracker; the
run is also usable without a store (``executor`` tests, quick checks), keeping what it is told
in memory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence

from ..errors import InvalidName, InvalidValue
from .config import Config, check_json
from .task import plain_data

# Not `from typing import ...`: importing typing is a measurable part of a child's start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from ..repository import Repository
    from .callbacks import Callback
    from .task import Task

__all__ = ["Run"]


class Run:
    """One configuration of a sweep while it runs (one experiment record)."""

    def __init__(
        self,
        task: Task,
        *,
        tracker: Any = None,
        repo: Repository | None = None,
        callbacks: Sequence[Callback] = (),
        hooks: Mapping[str, Sequence[Callable[..., Any]]] | None = None,
    ) -> None:
        self._task = task
        self._tracker = tracker
        self._repo = repo
        self._callbacks = [cb.fresh() for cb in callbacks]
        self._hooks = dict(hooks or {})
        self._data: dict[str, Any] = {}
        self._summary: dict[str, dict[str, Any]] = {}
        self._out: str | None = task.out_dir
        self._context_update: dict[str, Any] = {}
        #: Set by EarlyStopping (or by you): the function should wind down and return.
        self.should_stop = False
        #: The weight commit the record ends with (set by Checkpoint to the best one).
        self.final_commit: str | None = None
        #: Weight commits made through this run, in order.
        self.weight_commits: list[str] = []
        self.config = Config(task.config)

    # -- who am I ------------------------------------------------------------------------------

    @property
    def id(self) -> str | None:
        """The experiment id of this configuration's record (None without a store)."""
        return self._task.experiment_id

    @property
    def name(self) -> str:
        return self._task.name

    @property
    def sweep_id(self) -> str | None:
        return self._task.sweep_id

    @property
    def position(self) -> tuple[int, ...]:
        return tuple(self._task.position)

    @property
    def setup(self) -> dict[str, Any]:
        """The sweep's setup context (what the ``@train.setup`` functions returned, merged)."""
        return self._task.context

    @property
    def testing(self) -> bool:
        """True in ``--testing`` mode."""
        return self._task.testing

    @property
    def seed(self) -> int | None:
        """This configuration's ``seed`` (for ``numpy.random.default_rng(run.seed)``)."""
        return self._task.seeds.get("seed")

    @property
    def repo(self) -> Repository | None:
        return self._repo

    @property
    def out(self) -> Path:
        """A folder for this run's files; every file in it is recorded (by content hash) as an
        artifact of the run when the function returns."""
        from pathlib import Path

        if self._out is None:
            import tempfile

            self._out = tempfile.mkdtemp(prefix=f"coralx-{self.name}-")
        out = Path(self._out)
        out.mkdir(parents=True, exist_ok=True)
        return out

    # -- metrics -------------------------------------------------------------------------------

    def log(self, name: str, value: float, step: int | None = None) -> None:
        """Log one value of a metric (a time series); callbacks see it at once."""
        value = float(value)
        if self._tracker is not None:
            self._tracker.log(name, value, step=step)
        self._summarise(name, value, step)
        for cb in self._callbacks:
            cb.on_log(self, name, value, step)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for name, value in metrics.items():
            self.log(name, value, step=step)

    def latest(self, metric: str) -> float | None:
        """The last value logged for ``metric`` in this run, or None."""
        summary = self._summary.get(metric)
        return None if summary is None else summary["last"]

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        """Per metric: ``last``, ``min``, ``max``, ``count``, ``last_step``."""
        return {k: dict(v) for k, v in self._summary.items()}

    def _summarise(self, name: str, value: float, step: int | None) -> None:
        s = self._summary.get(name)
        if s is None:
            s = self._summary[name] = {"last": value, "min": None, "max": None, "count": 0}
        s["last"] = value
        s["count"] += 1
        s["last_step"] = step
        if not math.isnan(value):
            s["min"] = value if s["min"] is None else min(s["min"], value)
            s["max"] = value if s["max"] is None else max(s["max"], value)

    def log_params(self, params: Mapping[str, Any]) -> None:
        check_json(dict(params), "params")
        if self._tracker is not None:
            self._tracker.log_params(dict(params))

    def add_tags(self, tags: Sequence[str]) -> None:
        if self._tracker is not None:
            self._tracker.add_tags(list(tags))

    def set_notes(self, notes: str) -> None:
        if self._tracker is not None:
            self._tracker.set_notes(notes)

    # -- nested data ---------------------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        """``run["results/final/loss"] = 0.1``: nested data, kept in the record's ``data``."""
        parts = _split_key(key)
        check_json(value, f"run[{key!r}]")
        node = self._data
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = plain_data(value)
        if self._tracker is not None:
            self._tracker.set_data("/".join(parts), value)

    def __getitem__(self, key: str) -> Any:
        node: Any = self._data
        for part in _split_key(key):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(key)
            node = node[part]
        return node

    def __contains__(self, key: str) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True

    @property
    def data(self) -> dict[str, Any]:
        return plain_data(self._data)

    def update_context(self, update: Mapping[str, Any]) -> None:
        """Merge ``update`` into the sweep's setup context for configurations that start later
        (with several workers, after this one finishes)."""
        check_json(dict(update), "context update")
        self._context_update.update(update)

    # -- files ---------------------------------------------------------------------------------

    def log_artifact(
        self,
        name: str,
        obj: Any,
        *,
        step: int | None = None,
        media_type: str | None = None,
    ) -> dict[str, Any]:
        """Record an artifact under ``name``: a ``pathlib.Path`` (the file's bytes), ``bytes``,
        a ``str`` (text), a dict or list (JSON), or a matplotlib figure (PNG). Returns the
        artifact entry (with the content hash ``blob``)."""
        _split_key(name)
        data, guessed, kind = _artifact_bytes(name, obj)
        media_type = media_type or guessed
        if self._tracker is not None:
            entry: dict[str, Any] = self._tracker.log_artifact(
                name, data, media_type=media_type, kind=kind, step=step
            )
            return entry
        target = self.out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return {"name": name, "size": len(data), "media_type": media_type, "kind": kind}

    def log_text(self, tag: str, text: str, step: int | None = None) -> dict[str, Any]:
        """Store ``text`` under ``tag`` (at ``step``) in this run's record, as
        ``ExperimentTracker.log_text`` does; without a store, a file in :attr:`out`."""
        if self._tracker is None:
            from ..records.media import log_text

            return log_text(_OutFolder(self), tag, text, step)
        entry: dict[str, Any] = self._tracker.log_text(tag, text, step=step)
        return entry

    def log_figure(
        self, tag: str, figure: Any, step: int | None = None, interactive: bool = True
    ) -> list[dict[str, Any]]:
        """Store a matplotlib figure (PNG and SVG) or a plotly figure (JSON) under ``tag``, as
        ``ExperimentTracker.log_figure`` does; without a store, files in :attr:`out`."""
        if self._tracker is None:
            from ..records.media import log_figure

            return log_figure(_OutFolder(self), tag, figure, step, interactive)
        entries: list[dict[str, Any]] = self._tracker.log_figure(
            tag, figure, step=step, interactive=interactive
        )
        return entries

    def _record_out_folder(self) -> None:
        if self._tracker is None or self._out is None or not os.path.isdir(self._out):
            return
        from pathlib import Path

        root = Path(self._out)
        for path in sorted(root.rglob("*")):
            if path.is_file():
                rel = path.relative_to(root).as_posix()
                self._tracker.log_artifact(
                    rel, path, media_type=_guess_media(rel), kind="out", step=None
                )

    # -- weights -------------------------------------------------------------------------------

    def commit_weights(
        self, weights: Mapping[str, Any], message: str | None = None, *, branch: str | None = None
    ) -> Any:
        """Stage ``weights`` (name -> array) and commit them to the store, linked to this run.
        Returns the :class:`WeightCommit`; its ``commit_hash`` is what ``coralx checkout``
        takes."""
        if self._repo is None:
            raise InvalidValue(
                "commit_weights needs a coralx store: run the sweep inside a project with "
                "`coralx init` done (or pass repo=...)"
            )
        repo: Any = self._repo  # the weight store's methods (stage_weights, commit)
        repo.stage_weights(weights)
        commit = repo.commit(
            message or f"{self.name}: weights", branch=branch, experiment_id=self.id
        )
        self.weight_commits.append(commit.commit_hash)
        self.final_commit = commit.commit_hash
        return commit

    def checkpoint(self, weights: Mapping[str, Any], step: int) -> None:
        """Offer the weights at ``step`` to the Checkpoint callbacks, which commit them when due."""
        for cb in self._callbacks:
            cb.on_checkpoint(self, weights, step)

    # -- hooks ---------------------------------------------------------------------------------

    def apply_hook(self, name: str, default: Any = None, **kwargs: Any) -> Any:
        """Call every function registered with ``@train.hook(name)`` as ``fn(run, **kwargs)``;
        return the last non-None value they returned, else ``default``."""
        value = default
        for fn in self._hooks.get(name, ()):
            out = fn(self, **kwargs)
            if out is not None:
                value = out
        return value

    # -- lifecycle (called by the executor's worker) ------------------------------------------

    def _start(self) -> None:
        for cb in self._callbacks:
            cb.on_start(self)
        self.apply_hook("before_run")

    def _finish(self, status: str) -> None:
        if status == "completed":
            self.apply_hook("after_run")
        for cb in self._callbacks:
            cb.on_end(self, status)
        self._record_out_folder()

    def __repr__(self) -> str:
        return f"<Run {self.name} id={self.id}>"


def _split_key(key: str) -> list[str]:
    if not isinstance(key, str) or not key:
        raise InvalidName("data key", key, "use a non-empty string like 'results/loss'")
    parts = [p for p in key.split("/") if p]
    if key.startswith("/") or any(p in ("..", ".") for p in parts) or "\\" in key:
        raise InvalidName("data key", key, "use relative slash-separated names, no '..'")
    return list(parts)


def _artifact_bytes(name: str, obj: Any) -> tuple[bytes, str, str]:
    from pathlib import Path

    if isinstance(obj, os.PathLike):
        path = Path(obj)
        if not path.is_file():
            raise InvalidValue(f"artifact {name!r}: {path} is not a file")
        return path.read_bytes(), _guess_media(path.name), "file"
    if isinstance(obj, bytes | bytearray | memoryview):
        return bytes(obj), _guess_media(name), "file"
    if isinstance(obj, str):
        return obj.encode("utf-8"), "text/plain", "text"
    if hasattr(obj, "savefig"):
        import io

        buf = io.BytesIO()
        obj.savefig(buf, format="png")
        return buf.getvalue(), "image/png", "figure"
    if isinstance(obj, Mapping | list | tuple | int | float | bool) or obj is None:
        import json

        check_json(obj, f"artifact {name!r}")
        return json.dumps(obj, indent=2).encode("utf-8"), "application/json", "json"
    raise InvalidValue(
        f"artifact {name!r}: cannot store a {type(obj).__name__}; pass a pathlib.Path, bytes, "
        "str, a dict/list (JSON) or a matplotlib figure"
    )


def _guess_media(name: str) -> str:
    import mimetypes

    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class _OutFolder:
    """Text and figures of a run without a store: files in its ``out`` folder, named by tag,
    step and format."""

    _SUFFIX = {"image/png": "png", "image/svg+xml": "svg"}

    def __init__(self, run: Run) -> None:
        self.run = run

    def log_artifact(
        self,
        name: str,
        data: bytes,
        media_type: str | None = None,
        kind: str = "file",
        step: int | None = None,
    ) -> dict[str, Any]:
        suffix = self._SUFFIX.get(str(media_type), "txt" if kind == "text" else "json")
        at = "" if step is None else f"-{step}"
        return self.run.log_artifact(f"{name}{at}.{suffix}", data, step=step)
