"""Reading part of a weight commit: a read-only mapping of its tensors, like ``safe_open``.

Names, shapes and dtypes come from the commit's manifest, so listing them decodes nothing;
a tensor's chunks are decoded (and verified against their ids) when the tensor is read, so
reading one tensor of a large commit costs that tensor, not the commit.

>>> with repo.open("best") as f:
...     names = list(f.keys())
...     w = f.get_tensor("encoder.weight")      # or f["encoder.weight"]
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..errors import TensorNotFound
from .base import ChunkStore
from .manifest import Manifest

__all__ = ["WeightReader", "close_names", "select_names"]


def close_names(name: str, names: Iterable[str], n: int = 5) -> list[str]:
    """The names most like ``name`` (for an error message), best first."""
    return difflib.get_close_matches(name, list(names), n=n, cutoff=0.4)


def select_names(
    manifest: Manifest, commit: str, names: Iterable[str] | None = None,
    patterns: Iterable[str] | None = None,
) -> list[str]:  # fmt: skip
    """The manifest's names to read, in the manifest's order: every name in ``names`` (each
    must exist) and every name matching one of the glob ``patterns`` (each must match
    something). :class:`TensorNotFound`, listing close names, otherwise."""
    if names is None and patterns is None:
        return list(manifest)
    if isinstance(names, str) or isinstance(patterns, str):
        raise TypeError("names and patterns are lists of strings, not one string")
    wanted: set[str] = set()
    for name in names or ():
        if name not in manifest.tensors:
            raise TensorNotFound(name, commit, close_names(name, manifest))
        wanted.add(name)
    for pattern in patterns or ():
        hits = [n for n in manifest if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise TensorNotFound(pattern, commit, close_names(pattern, manifest), pattern=True)
        wanted.update(hits)
    return [n for n in manifest if n in wanted]


class WeightReader(Mapping[str, Any]):
    """The tensors of one commit, decoded on access (see the module docstring).

    ``framework="torch"`` returns torch tensors. Read-only: there is nothing to write back.
    """

    def __init__(
        self, store: ChunkStore, manifest: Manifest, commit: str, framework: str = "numpy"
    ) -> None:
        self._store = store
        self._manifest = manifest
        self.commit = commit
        self.framework = framework

    # -- what safe_open offers -----------------------------------------------------------------

    def keys(self) -> list[str]:  # type: ignore[override]  # a list, as safe_open's
        """The tensor names, in the commit's order."""
        return list(self._manifest)

    def get_tensor(self, name: str) -> Any:
        """Decode one tensor (every chunk verified)."""
        return self.get_tensors([name])[name]

    def get_tensors(self, names: Iterable[str]) -> dict[str, Any]:
        """Decode several tensors at once (their chunks share the worker pool)."""
        from ..weight_history import convert_arrays
        from .weights import read_tensors

        chosen = select_names(self._manifest, self.commit, names=list(names))
        arrays = read_tensors(self._store, self._manifest, chosen, self.commit)
        return convert_arrays(arrays, self.framework)

    def shape(self, name: str) -> tuple[int, ...]:
        """A tensor's shape, without decoding it."""
        return self._entry(name).shape

    def dtype(self, name: str) -> str:
        """A tensor's safetensors dtype name (``"F32"``, ``"BF16"``...), without decoding it."""
        return self._entry(name).dtype

    def nbytes(self, name: str) -> int:
        """A tensor's raw size in bytes."""
        return self._entry(name).nbytes

    def _entry(self, name: str) -> Any:
        try:
            return self._manifest.tensors[name]
        except KeyError:
            raise TensorNotFound(name, self.commit, close_names(name, self._manifest)) from None

    # -- the mapping ------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Any:
        return self.get_tensor(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._manifest)

    def __len__(self) -> int:
        return len(self._manifest)

    def __contains__(self, name: object) -> bool:
        return name in self._manifest.tensors

    def __enter__(self) -> WeightReader:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __repr__(self) -> str:
        return f"<WeightReader commit {self.commit[:12]}: {len(self)} tensors>"
