"""Manifests: which chunks make up each tensor of a weight commit.

A manifest is a JSON document stored as a git blob (``manifest.json`` in the commit's tree):
for each tensor, in the order it was staged, its dtype, shape, size, chunk size and chunk ids.
Tensor names are any string safetensors accepts; they are keys in this document and are never
used as paths.

>>> manifest = Manifest({"w": TensorEntry("F32", (2, 3), 24, CHUNK_BYTES, [chunk_id])})
>>> Manifest.from_json(manifest.to_json()) == manifest
True
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import StoreCorrupted
from ..ids import check_chunk_id
from .tensors import chunk_spans, dtype_by_name

__all__ = ["MANIFEST_FORMAT", "Manifest", "TensorEntry"]

MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a commit: its dtype (safetensors name), shape, size and chunks."""

    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    chunk_bytes: int
    chunks: list[str] = field(default_factory=list)

    @property
    def itemsize(self) -> int:
        return dtype_by_name(self.dtype).itemsize

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def spans(self) -> list[slice]:
        """The byte range of each chunk in the tensor's raw bytes."""
        return list(chunk_spans(self.nbytes, self.itemsize, self.chunk_bytes))

    def to_dict(self) -> dict[str, Any]:
        return {
            "dtype": self.dtype,
            "shape": list(self.shape),
            "nbytes": self.nbytes,
            "chunk_bytes": self.chunk_bytes,
            "chunks": list(self.chunks),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorEntry:
        entry = cls(
            dtype=str(data["dtype"]),
            shape=tuple(int(n) for n in data["shape"]),
            nbytes=int(data["nbytes"]),
            chunk_bytes=int(data["chunk_bytes"]),
            chunks=[check_chunk_id(c) for c in data["chunks"]],
        )
        dtype = dtype_by_name(entry.dtype)
        if entry.nbytes != entry.numel * dtype.itemsize or len(entry.spans()) != len(entry.chunks):
            raise StoreCorrupted(f"a manifest entry is inconsistent: {data!r:.200}")
        return entry


@dataclass
class Manifest:
    """The tensors of one weight commit, in staging order.

    ``torch`` describes how the tensors map back onto torch objects when they came from an
    ``nn.Module`` (tied names, optimizer state; see :mod:`coralx.store.torch_compat`). It is
    written only when not empty, so other manifests are unchanged.
    """

    tensors: dict[str, TensorEntry] = field(default_factory=dict)
    torch: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    @property
    def nbytes(self) -> int:
        """Raw bytes of all tensors together."""
        return sum(e.nbytes for e in self.tensors.values())

    def chunk_ids(self) -> set[str]:
        return {c for e in self.tensors.values() for c in e.chunks}

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "tensors": {name: e.to_dict() for name, e in self.tensors.items()},
        }
        if self.torch:
            doc["torch"] = self.torch
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        try:
            doc = json.loads(data.decode("utf-8"))
            if doc.get("format") != MANIFEST_FORMAT:
                raise StoreCorrupted(
                    f"manifest format {doc.get('format')!r} is not one coralx reads"
                )
            tensors = {str(k): TensorEntry.from_dict(v) for k, v in doc["tensors"].items()}
            torch = doc.get("torch") or {}
            if not isinstance(torch, dict):
                raise TypeError("its 'torch' section is not an object")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreCorrupted(f"a weight manifest is unreadable: {exc}") from None
        return cls(tensors, torch)
