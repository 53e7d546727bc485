"""pyexp's log folder, written and read without pickle: what ``Logger(log_dir)`` and
``LogReader(log_dir)`` use when given a folder rather than a tracker or a store.

```
log_dir/
  .pyexp                    marks the folder as a run's log
  <iteration>/
    scalars.json            {tag: value}
    text.json               {tag: text}
    figures/
      <tag>.png, <tag>.svg  a matplotlib figure (where pyexp pickles it, coralx keeps images)
      <tag>.json            a plotly figure
      <tag>.meta            {"interactive": true|false}
```

Scalars and text are gathered per iteration and written (atomically) when the iteration
changes, on ``flush()`` and at exit; figures are written at once. Tags are JSON keys; in file
names they are percent-encoded, so no tag can name a path outside the folder.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from .._fs import atomic_write
from ..errors import ArtifactNotFound, InvalidValue
from . import media

__all__ = ["MARKER", "FolderLog", "FolderReader", "is_log_folder"]

MARKER = ".pyexp"
_SUFFIX = {"image/png": ".png", "image/svg+xml": ".svg", media.PLOTLY_JSON: ".json"}
_MEDIA = {v: k for k, v in _SUFFIX.items()}


def is_log_folder(path: str | os.PathLike[str]) -> bool:
    """True for a run's log folder, or a folder holding such folders."""
    folder = Path(path)
    if (folder / MARKER).is_file():
        return True
    return folder.is_dir() and any((child / MARKER).is_file() for child in _subdirs(folder))


def _subdirs(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir()]
    except OSError:
        return []


def _file_name(tag: str) -> str:
    return quote(tag, safe="")


class FolderLog:
    """A logging target (``log`` and ``log_artifact``, as a run has) over a log folder."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        marker = self.folder / MARKER
        if not marker.exists():
            atomic_write(marker, b"")
        self._pending: dict[int, dict[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        _open_logs.add(self)

    def _iteration(self, step: int | None) -> int:
        return 0 if step is None else step

    def log(self, name: str, value: float, step: int | None = None) -> None:
        self._add(self._iteration(step), "scalars", name, float(value))

    def log_text(self, tag: str, text: str, step: int | None = None) -> None:
        if not isinstance(text, str):
            raise InvalidValue(f"add_text takes a str, not {type(text).__name__}")
        self._add(self._iteration(step), "text", tag, text)

    def _add(self, it: int, kind: str, tag: str, value: Any) -> None:
        with self._lock:
            if self._pending and it not in self._pending:
                self._write_pending()
            self._pending.setdefault(it, {}).setdefault(kind, {})[tag] = value

    def log_artifact(
        self,
        name: str,
        data: bytes,
        *,
        media_type: str,
        kind: str,
        step: int | None = None,
    ) -> dict[str, Any]:
        suffix = _SUFFIX.get(media_type)
        if suffix is None:
            raise InvalidValue(f"a log folder keeps figures and text, not {media_type}")
        figures = self.folder / str(self._iteration(step)) / "figures"
        figures.mkdir(parents=True, exist_ok=True)
        stem = _file_name(name)
        atomic_write(figures / f"{stem}{suffix}", data)
        meta = {"interactive": kind == media.FIGURE_KIND}
        atomic_write(figures / f"{stem}.meta", json.dumps(meta))
        return {"name": name, "media_type": media_type, "kind": kind, "step": step}

    def flush(self) -> None:
        with self._lock:
            self._write_pending()

    def _write_pending(self) -> None:
        for it, kinds in self._pending.items():
            folder = self.folder / str(it)
            folder.mkdir(parents=True, exist_ok=True)
            for kind, values in kinds.items():
                path = folder / f"{kind}.json"
                merged = _read_json(path) or {}
                merged.update(values)
                atomic_write(path, json.dumps(merged, allow_nan=True))
        self._pending.clear()


_open_logs: weakref.WeakSet[FolderLog] = weakref.WeakSet()


@atexit.register
def _flush_open_logs() -> None:
    for log in list(_open_logs):
        try:
            log.flush()
        except OSError:
            pass  # at exit, a folder that went away has nothing left to keep


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise InvalidValue(f"{path} is not valid JSON ({exc}); the log folder is damaged") from None
    return data if isinstance(data, dict) else None


class FolderReader:
    """pyexp's ``LogReader`` over a log folder (a run), or a folder of them."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def is_run(self) -> bool:
        return (self.path / MARKER).is_file()

    @property
    def runs(self) -> list[str]:
        """Names of the run folders below this one, sorted."""
        return sorted(p.name for p in _subdirs(self.path) if (p / MARKER).is_file())

    def get_run(self, name: str) -> FolderReader:
        if name not in self.runs:
            raise ArtifactNotFound(
                f"no run {name!r} in {self.path}; runs: {', '.join(self.runs) or 'none'}"
            )
        return FolderReader(self.path / name)

    @property
    def iterations(self) -> list[int]:
        return sorted(int(p.name) for p in _subdirs(self.path) if p.name.lstrip("-").isdigit())

    def _values(self, kind: str) -> list[tuple[int, dict[str, Any]]]:
        out = []
        for it in self.iterations:
            data = _read_json(self.path / str(it) / f"{kind}.json")
            if data:
                out.append((it, data))
        return out

    @property
    def scalar_tags(self) -> set[str]:
        return {tag for _, data in self._values("scalars") for tag in data}

    @property
    def text_tags(self) -> set[str]:
        return {tag for _, data in self._values("text") for tag in data}

    @property
    def figure_tags(self) -> set[str]:
        tags = set()
        for it in self.iterations:
            for meta in (self.path / str(it) / "figures").glob("*.meta"):
                tags.add(unquote(meta.stem))
        return tags

    def load_scalars(self, tag: str) -> list[tuple[int, float]]:
        return [(it, data[tag]) for it, data in self._values("scalars") if tag in data]

    def load_text(self, tag: str) -> list[tuple[int, str]]:
        return [(it, data[tag]) for it, data in self._values("text") if tag in data]

    def figure_iterations(self, tag: str) -> list[int]:
        stem = _file_name(tag)
        return [
            it
            for it in self.iterations
            if (self.path / str(it) / "figures" / f"{stem}.meta").is_file()
        ]

    def load_figure(self, tag: str, iteration: int | None = None) -> Any:
        """A plotly Figure, or a :class:`~coralx.records.media.StoredImage` (PNG and SVG)."""
        found = self.figure_iterations(tag)
        if iteration is None and found:
            iteration = found[-1]
        if iteration not in found:
            at = "" if iteration is None else f" at iteration {iteration}"
            raise ArtifactNotFound(f"{self.path} has no figure {tag!r}{at}")
        figures = self.path / str(iteration) / "figures"
        stem = _file_name(tag)
        formats = {
            media_type: (figures / f"{stem}{suffix}").read_bytes()
            for suffix, media_type in _MEDIA.items()
            if (figures / f"{stem}{suffix}").is_file()
        }
        return media.load_figure_payload(formats)

    def __repr__(self) -> str:
        return f"<LogReader {self.path}>"
