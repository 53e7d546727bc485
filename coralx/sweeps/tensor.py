"""Items laid out in a sweep's shape, indexed as the sweep was built.

>>> t = Tensor(configs, shape=(1, 2, 2))   # what ``sweep`` builds, and what results come back as
>>> t[0, 1, :]                            # positions and slices, one per axis
>>> t["exp_lr0.1_*"]                      # a name glob
>>> t[{"model.width": 64}]                # a dict query on dotted paths

One indexing mechanism serves configurations (:class:`Tensor`, which ``coralx.pyexp.sweep``
returns) and results (:class:`~coralx.sweeps.results.ResultSet`). A glob or dict filter gives a
flat selection of shape ``(k,)`` by default; with ``keep_shape=True`` (pyexp's rule) it keeps
the sweep's axes, narrowed to the positions that match, whenever the matches form such a block
(every combination of the kept positions matches); otherwise it is flat.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["Tensor"]

T = TypeVar("T")
_MISSING = object()


class Tensor(Sequence[T], Generic[T]):
    """A flat list of items with a shape (a tuple whose product is the length)."""

    def __init__(
        self,
        items: Sequence[T] = (),
        shape: Sequence[int] | None = None,
        *,
        keep_shape: bool = False,
    ) -> None:
        self._items = list(items)
        self.shape: tuple[int, ...] = tuple(shape) if shape is not None else (len(self._items),)
        size = 1
        for n in self.shape:
            size *= n
        if size != len(self._items):
            raise ValueError(f"shape {self.shape} does not hold {len(self._items)} items")
        self.keep_shape = keep_shape

    # -- what a subclass may change --------------------------------------------------------------

    def _new(self, items: Sequence[T], shape: Sequence[int] | None) -> Any:
        return type(self)(items, shape, keep_shape=self.keep_shape)

    @staticmethod
    def item_name(item: Any) -> str:
        name = item.get("name") if isinstance(item, Mapping) else getattr(item, "name", None)
        return "" if name is None else str(name)

    @staticmethod
    def item_lookup(item: Any, path: str, default: Any) -> Any:
        node: Any = item
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    # -- indexing --------------------------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self.select([fnmatch.fnmatchcase(self.item_name(i), key) for i in self._items])
        if isinstance(key, Mapping):
            return self.where(key)
        if not isinstance(key, tuple):
            key = (key,)
        return self._index(key)

    def _grid(self, values: Sequence[Any]) -> Any:
        import numpy as np

        grid = np.empty(self.shape, dtype=object)
        for i, value in enumerate(values):
            grid.flat[i] = value
        return grid

    def _index(self, key: tuple[Any, ...]) -> Any:
        import numpy as np

        try:
            picked = self._grid(self._items)[key]
        except IndexError as exc:
            raise IndexError(f"{exc} (the shape is {self.shape})") from None
        if isinstance(picked, np.ndarray):
            return self._new(list(picked.flat), picked.shape)
        return picked

    def where(self, query: Mapping[str, Any]) -> Any:
        """Items whose dotted paths equal every value of ``query``."""
        return self.select(
            [
                all(self.item_lookup(i, path, _MISSING) == want for path, want in query.items())
                for i in self._items
            ]
        )

    def filter(self, predicate: Any) -> Any:
        return self.select([bool(predicate(i)) for i in self._items])

    def select(self, mask: Sequence[bool]) -> Any:
        """The items where ``mask`` is true: flat, or in shape (see the module's docstring)."""
        if self.keep_shape and self.shape:
            block = self._block(mask)
            if block is not None:
                return block
        return self._new([i for i, keep in zip(self._items, mask) if keep], None)

    def _block(self, mask: Sequence[bool]) -> Any:
        import numpy as np

        grid = self._grid(self._items)
        marks = np.asarray(mask, dtype=bool).reshape(self.shape)
        keep = []
        for axis in range(marks.ndim):
            others = tuple(a for a in range(marks.ndim) if a != axis)
            keep.append(np.flatnonzero(marks.any(axis=others) if others else marks))
        chosen = np.ix_(*keep)
        if not marks[chosen].all():
            return None
        sub = grid[chosen]
        return self._new(list(sub.flat), sub.shape)

    # -- views -----------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def names(self) -> list[str]:
        return [self.item_name(i) for i in self._items]

    def tolist(self) -> list[T]:
        """The items, flat, in order."""
        return list(self._items)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} shape={self.shape} names={self.names[:4]}...>"
