"""``e.cache.cached(name=..., scope=(...))``: a function's result kept across runs, in the store.

The result is a content-addressed blob of the coralx store (``.coralx/blobs/``): JSON for plain
data, ``.npy`` (``allow_pickle=False``) for a numpy array; never a pickle, so loading a cached
value runs no code. A small entry under ``.coralx/pycomex/cache/`` names the blob for each
``(scope, name)``. As in PyComex, the key is the name and scope only, not the function's
arguments, and ``__CACHING__ = False`` recomputes (and stores the new value) without loading.

>>> @experiment.cache.cached(name="embeddings", scope=("dataset", "v1"))
... def embed():
...     return numpy.ones((3, 4))
>>> embed()   # computed once; later runs load it from the store
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _fs
from ..errors import InvalidValue
from .jsonify import to_json

if TYPE_CHECKING:
    from ..repository import Repository

__all__ = ["ExperimentCache"]

CACHE_DIR = ("pycomex", "cache")


class ExperimentCache:
    """The cache of one experiment; ``repo`` is opened when a cached function is first called."""

    def __init__(self, experiment: Any) -> None:
        self.experiment = experiment
        self.enabled = True
        #: ``(name, scope, "hit" | "miss")`` for each call, in order (the run logs them).
        self.events: list[tuple[str, tuple[str, ...], str]] = []

    def set_enabled(self, enabled: bool) -> None:
        """When disabled, values are computed again (and stored), never loaded."""
        self.enabled = bool(enabled)

    def cached(
        self,
        name: str,
        scope: tuple[Any, ...] | Callable[[Any], tuple[Any, ...]] = (),
        **_ignored: Any,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorate a function whose result is cached under ``name`` within ``scope`` (a tuple,
        or a function of the experiment returning one)."""
        if not isinstance(name, str) or not name:
            raise InvalidValue("cache.cached needs a non-empty name")

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                parts = self._scope(scope)
                repo = self.experiment._store()
                if self.enabled:
                    found, value = self.load(repo, name, parts)
                    if found:
                        self.events.append((name, parts, "hit"))
                        return value
                value = fn(*args, **kwargs)
                self.save(repo, name, parts, value)
                self.events.append((name, parts, "miss"))
                return value

            wrapper.__name__ = getattr(fn, "__name__", "cached")
            wrapper.__doc__ = getattr(fn, "__doc__", None)
            wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
            return wrapper

        return decorate

    def _scope(self, scope: Any) -> tuple[str, ...]:
        value = scope(self.experiment) if callable(scope) else scope
        if not isinstance(value, tuple | list):
            raise InvalidValue(f"a cache scope is a tuple of strings, not {type(value).__name__}")
        return tuple(str(v) for v in value)

    # -- storage -------------------------------------------------------------------------------

    @staticmethod
    def _entry_path(repo: Repository, name: str, scope: tuple[str, ...]) -> Path:
        key = json.dumps([list(scope), name]).encode("utf-8")
        digest = hashlib.sha256(key).hexdigest()
        return Path(repo.path).joinpath(*CACHE_DIR, f"{digest}.json")

    def load(self, repo: Repository, name: str, scope: tuple[str, ...]) -> tuple[bool, Any]:
        """``(True, value)`` when ``(scope, name)`` is cached, else ``(False, None)``."""
        from ..records.blobs import BlobStore

        path = self._entry_path(repo, name, scope)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return False, None
        data = BlobStore(repo).get(entry["blob"])  # verified against its hash
        if entry["format"] == "npy":
            import numpy as np

            return True, np.load(io.BytesIO(data), allow_pickle=False)
        return True, json.loads(data)

    def save(self, repo: Repository, name: str, scope: tuple[str, ...], value: Any) -> str:
        """Store ``value`` (JSON data or a numpy array); returns the blob id."""
        from ..records.blobs import BlobStore

        data, fmt = _encode(name, value)
        blob = BlobStore(repo).put(data)
        path = self._entry_path(repo, name, scope)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"name": name, "scope": list(scope), "format": fmt, "blob": blob}
        _fs.atomic_write(path, json.dumps(entry).encode("utf-8"))
        return blob


def _encode(name: str, value: Any) -> tuple[bytes, str]:
    kind = type(value)
    if kind.__module__ == "numpy" and kind.__name__ == "ndarray":
        import numpy as np

        if value.dtype.hasobject:
            raise InvalidValue(
                f"cached value {name!r} is an object array; the cache holds JSON data or "
                "numeric numpy arrays (never pickles)"
            )
        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        return buf.getvalue(), "npy"
    try:
        plain = to_json(value, strict=True)
    except TypeError as exc:
        raise InvalidValue(
            f"cached value {name!r} cannot be stored: {exc}; the cache holds JSON data "
            "(dicts, lists, numbers, strings) or numpy arrays, never pickles"
        ) from None
    return json.dumps(plain).encode("utf-8"), "json"
