"""pyexp-style logging and reading over coralx runs: :class:`Logger` and :class:`LogReader`.

``Logger`` writes scalars, text and figures into the active run of a tracker (or a sweep's
run) at a global iteration; ``LogReader`` reads them back from the store's records. Figures
are stored as PNG+SVG (matplotlib) or JSON (plotly), never pickled.

>>> from coralx import Logger, LogReader, Repository
>>> from coralx.experiments import ExperimentTracker
>>> tracker = ExperimentTracker(Repository(".", init=True))
>>> exp = tracker.start("demo")
>>> log = Logger(tracker)
>>> for it in range(3):
...     log.set_global_it(it)
...     log.add_scalar("loss", 1.0 / (it + 1))
...     log.add_text("note", f"iteration {it}")
>>> log.flush(); tracker.end()
>>> run = LogReader(".").get_run(exp.experiment_id)
>>> run.load_scalars("loss")[:2]
[(0, 1.0), (1, 0.5)]
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ArtifactNotFound, ExperimentNotFound, InvalidValue
from .records import media

if TYPE_CHECKING:
    from .repository import Repository

__all__ = ["LogReader", "Logger", "RunLog"]


class Logger:
    """The seed's ``Logger``, writing into the active run of ``target``.

    ``target`` is an ``ExperimentTracker`` (its current run) or a sweep's ``Run``: anything
    with ``log(name, value, step=None)`` and ``log_artifact(...)``; its own ``log_text`` and
    ``log_figure`` are used when it has them. A folder (``Logger("out/exp/run1")``, pyexp's
    form) writes pyexp's log layout there (see :mod:`coralx.records.folder_log`), and also into
    the sweep run whose function is executing, if any.
    """

    def __init__(self, target: Any) -> None:
        if isinstance(target, str | os.PathLike):
            target = _folder_target(target)
        for method in ("log", "log_artifact"):
            if not callable(getattr(target, method, None)):
                raise InvalidValue(
                    f"Logger needs a tracker or a sweep run (with .{method}), "
                    f"not {type(target).__name__}"
                )
        self.target = target
        self.global_it: int | None = None

    def set_global_it(self, it: int) -> None:
        """The iteration (step) that the following ``add_*`` calls are logged at."""
        if isinstance(it, bool) or not isinstance(it, int):
            raise InvalidValue(f"the iteration must be a whole number, not {it!r}")
        self.global_it = it

    def add_scalar(self, tag: str, value: float) -> None:
        self.target.log(tag, value, step=self.global_it)

    def add_text(self, tag: str, text: str) -> None:
        log_text = getattr(self.target, "log_text", None)
        if callable(log_text):
            log_text(tag, text, step=self.global_it)
        else:
            media.log_text(self.target, tag, text, step=self.global_it)

    def add_figure(self, tag: str, figure: Any, interactive: bool = True) -> None:
        log_figure = getattr(self.target, "log_figure", None)
        if callable(log_figure):
            log_figure(tag, figure, step=self.global_it, interactive=interactive)
        else:
            media.log_figure(self.target, tag, figure, step=self.global_it, interactive=interactive)

    def flush(self) -> None:
        """Write buffered metrics to the store now (text and figures are written at once)."""
        flush = getattr(self.target, "flush", None)
        if callable(flush):
            flush()


def _folder_target(path: str | os.PathLike[str]) -> Any:
    from .records.folder_log import FolderLog
    from .sweeps.run import current

    folder = FolderLog(path)
    run = current()
    return folder if run is None else _Tee(folder, run)


class _Tee:
    """Log to a folder and to the executing run at once."""

    def __init__(self, *targets: Any) -> None:
        self.targets = targets

    def log(self, name: str, value: float, step: int | None = None) -> None:
        for t in self.targets:
            t.log(name, value, step=step)

    def log_text(self, tag: str, text: str, step: int | None = None) -> None:
        for t in self.targets:
            t.log_text(tag, text, step=step)

    def log_artifact(self, name: str, data: bytes, **kw: Any) -> dict[str, Any]:
        return [t.log_artifact(name, data, **kw) for t in self.targets][-1]

    def flush(self) -> None:
        for t in self.targets:
            flush = getattr(t, "flush", None)
            if callable(flush):
                flush()


class LogReader:
    """The seed's ``LogReader`` over a coralx store: ``runs`` are experiment ids.

    ``LogReader(path)`` opens the store at or above ``path``; a pyexp log folder (one a
    ``Logger(log_dir)`` wrote, or a folder of them) is read as pyexp reads it.
    """

    def __new__(cls, repo: Any = ".") -> Any:
        if isinstance(repo, str | os.PathLike):
            from .records.folder_log import FolderReader, is_log_folder

            if is_log_folder(repo):
                return FolderReader(repo)
        return super().__new__(cls)

    def __init__(self, repo: Repository | str | os.PathLike[str] = ".") -> None:
        from .repository import Repository

        self.repo = repo if isinstance(repo, Repository) else Repository.discover(repo)

    @property
    def path(self) -> Path:
        return self.repo.path

    is_run = False

    @cached_property
    def _tracker(self) -> Any:
        from .experiments import ExperimentTracker

        return ExperimentTracker(self.repo)

    @property
    def runs(self) -> list[str]:
        """Ids of every run in the store, oldest first."""
        return sorted(exp.experiment_id for exp in self._tracker.list())

    def get_run(self, run: str) -> RunLog:
        """A run by id, id prefix, or (unique) name."""
        try:
            experiment = self._tracker.get_or_raise(run)
        except ExperimentNotFound:
            named = self._tracker.get_by_name(run)
            if len(named) != 1:
                raise
            experiment = named[0]
        return RunLog(self.repo, experiment)


class RunLog:
    """What one run logged, read back: the seed's per-run ``LogReader``."""

    is_run = True

    def __init__(self, repo: Repository, experiment: Any) -> None:
        self.repo = repo
        self.experiment = experiment
        self.run_id: str = experiment.experiment_id

    @property
    def path(self) -> Path:
        return self.repo.path / "experiments" / f"{self.run_id}.json"

    def _artifacts(self, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
        out = []
        for art in getattr(self.experiment, "artifacts", None) or []:
            entry = art if isinstance(art, dict) else art.model_dump()
            if entry.get("kind") in kinds:
                out.append(entry)
        return out

    @property
    def scalar_tags(self) -> set[str]:
        return set(self.experiment.metric_names)

    @property
    def text_tags(self) -> set[str]:
        return {a["name"] for a in self._artifacts((media.TEXT_KIND,))}

    @property
    def figure_tags(self) -> set[str]:
        return {a["name"] for a in self._artifacts(media.FIGURE_KINDS)}

    @property
    def iterations(self) -> list[int]:
        """Every step at which something was logged, sorted."""
        steps = {m.step for m in self.experiment.metrics if m.step is not None}
        steps |= {
            a["step"]
            for a in self._artifacts((media.TEXT_KIND, *media.FIGURE_KINDS))
            if a.get("step") is not None
        }
        return sorted(steps)

    def load_scalars(self, tag: str) -> list[tuple[int | None, float]]:
        """``[(iteration, value), ...]`` in logging order."""
        return [(m.step, m.value) for m in self.experiment.get_metric_history(tag)]

    def load_text(self, tag: str) -> list[tuple[int | None, str]]:
        """``[(iteration, text), ...]`` in logging order."""
        from .records.blobs import BlobStore

        blobs = BlobStore(self.repo)
        entries = [a for a in self._artifacts((media.TEXT_KIND,)) if a["name"] == tag]
        if not entries:
            raise ArtifactNotFound(f"run {self.run_id} logged no text under {tag!r}")
        return [(a.get("step"), blobs.get(a["blob"]).decode("utf-8")) for a in entries]

    def figure_iterations(self, tag: str) -> list[int | None]:
        """The iterations at which figure ``tag`` was logged."""
        steps: dict[int | None, None] = {}
        for a in self._artifacts(media.FIGURE_KINDS):
            if a["name"] == tag:
                steps.setdefault(a.get("step"), None)
        return list(steps)

    def load_figure(self, tag: str, iteration: int | None = None) -> Any:
        """Figure ``tag`` at ``iteration`` (the last one logged when None): a plotly Figure,
        or a :class:`~coralx.records.media.StoredImage` with the PNG and SVG of a matplotlib
        figure."""
        from .records.blobs import BlobStore

        entries = [a for a in self._artifacts(media.FIGURE_KINDS) if a["name"] == tag]
        if iteration is not None:
            entries = [a for a in entries if a.get("step") == iteration]
        elif entries:
            last = entries[-1].get("step")
            entries = [a for a in entries if a.get("step") == last]
        if not entries:
            at = "" if iteration is None else f" at iteration {iteration}"
            raise ArtifactNotFound(f"run {self.run_id} has no figure {tag!r}{at}")
        blobs = BlobStore(self.repo)
        # The newest payload of each format wins when a tag was logged twice at one step.
        formats = {str(a.get("media_type")): a["blob"] for a in entries}
        return media.load_figure_payload({k: blobs.get(v) for k, v in formats.items()})
