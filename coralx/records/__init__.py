"""Experiment records: the JSON record (the truth), the metric journal, the SQLite index, blobs.

The modules here import only the standard library at import time, except ``models`` (pydantic),
so the fast query path of the CLI (``coralx exp list``) reads the index without pydantic.

- ``models``: the pydantic models of a record, with ``schema_version``.
- ``journal``: the append-only metric journal ``experiments/<id>.metrics``.
- ``index``: the derived SQLite index ``index.sqlite`` and the queries over it.
- ``store``: reading, writing and crash-checking records; keeps the index in step.
- ``blobs``: content-addressed blobs for artifacts.
"""

from __future__ import annotations

__all__: list[str] = []
