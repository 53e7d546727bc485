"""The results of a sweep, in the sweep's shape.

>>> results.shape                       # (1, 2, 3) for sweep([base], 2 variations) x 3
>>> results[0, 1, :]                    # positions and slices: a smaller ResultSet
>>> results["base_w64*"]                # a name glob: a flat ResultSet (keep_shape: in shape)
>>> results[{"config.model.width": 64}] # a dict query on dotted paths
>>> results.best("val_loss", "min")     # the best completed run, or None
>>> [r.error["message"] for r in results.failed]
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import Config
from .tensor import Tensor

__all__ = ["Result", "ResultSet"]

_MISSING = object()


@dataclass
class Result(Mapping[str, Any]):
    """One configuration's outcome. As a mapping it holds ``name``, ``config``, ``status`` and
    ``experiment_id``, then the keys of the dict the run returned; a failed run also holds
    ``__error__`` (True), ``type`` and ``message``, as pyexp's results do."""

    name: str
    config: Config
    status: str
    position: tuple[int, ...] = ()
    experiment_id: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    cached: bool = False
    parent_experiment: str | None = None
    duration: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def _fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "config": self.config,
            "status": self.status,
            "experiment_id": self.experiment_id,
        }
        if self.error is not None:
            out["__error__"] = True
            out["type"] = self.error.get("type")
            out["message"] = self.error.get("message")
        return out

    def __getitem__(self, key: str) -> Any:
        if self.result is not None and key in self.result:
            return self.result[key]
        fields = self._fields()
        if key in fields:
            return fields[key]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        keys = list(self._fields())
        keys += [k for k in (self.result or {}) if k not in keys]
        return iter(keys)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def lookup(self, path: str, default: Any = None) -> Any:
        """The value at a dotted path: ``"config.model.width"``, ``"accuracy"``, ``"status"``."""
        head, _, rest = path.partition(".")
        node: Any = self.get(head, _MISSING)
        if node is _MISSING:
            return default
        for part in rest.split(".") if rest else ():
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def value(self, metric: str, mode: str = "min") -> float | None:
        """The run's value for ``metric``: from the dict it returned, else the best logged value
        (``min`` or ``max`` by ``mode``), else None."""
        if self.result is not None and isinstance(self.result.get(metric), int | float):
            return float(self.result[metric])
        summary = self.metrics.get(metric)
        if summary:
            best = summary.get("min" if mode == "min" else "max")
            if isinstance(best, int | float):
                return float(best)
        return None

    def __repr__(self) -> str:
        extra = f" error={self.error.get('message')!r}" if self.error else ""
        return f"<Result {self.name} {self.status}{extra}>"

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


class ResultSet(Tensor[Result]):
    """Results with the sweep's shape: index by position (ints and slices, one per axis), by a
    name glob (``str``) or by a dict query (``{"config.lr": 0.1}``). Iterating walks every
    result in order; ``len`` is the number of results. Glob and dict filters are flat unless
    ``keep_shape`` (pyexp's rule; see :mod:`coralx.sweeps.tensor`)."""

    @staticmethod
    def item_name(item: Any) -> str:
        return str(item.name)

    @staticmethod
    def item_lookup(item: Any, path: str, default: Any) -> Any:
        return item.lookup(path, default)

    # -- views -----------------------------------------------------------------------------------

    @property
    def completed(self) -> ResultSet:
        return self.filter(lambda r: r.ok)

    @property
    def failed(self) -> ResultSet:
        return self.filter(lambda r: r.status in ("failed", "cancelled"))

    def best(self, metric: str, mode: str = "min") -> Result | None:
        """The completed result with the lowest (``mode="min"``) or highest (``"max"``) value of
        ``metric``, read by :meth:`Result.value`; None when no completed result has it."""
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', not {mode!r}")
        scored = [(r.value(metric, mode), r) for r in self._items if r.ok]
        present = [(v, r) for v, r in scored if v is not None]
        if not present:
            return None
        pick = min if mode == "min" else max
        return pick(present, key=lambda pair: pair[0])[1]

    def to_list(self) -> list[dict[str, Any]]:
        """Plain dicts, one per result (JSON-friendly)."""
        return [
            {
                "name": r.name,
                "position": list(r.position),
                "status": r.status,
                "experiment_id": r.experiment_id,
                "config": r.config.to_dict(),
                "result": r.result,
                "error": r.error,
                "cached": r.cached,
            }
            for r in self._items
        ]

    def __repr__(self) -> str:
        done = sum(1 for r in self._items if r.ok)
        return f"<ResultSet shape={self.shape} completed={done}/{len(self._items)}>"
