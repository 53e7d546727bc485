"""A sweep's configurations laid out by its shape, for the sweep page.

Every run of a sweep carries ``sweep.position`` (its index along each axis of the sweep's
shape) and ``sweep.repeat``. Cells are configurations; repeats of one configuration share a
cell, whose value is the mean of their main metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["sweep_layout"]


def _position(row: Any) -> tuple[int, ...]:
    sweep = row.record.get("sweep") or {}
    pos = sweep.get("position") if isinstance(sweep, Mapping) else None
    if isinstance(pos, list | tuple) and all(isinstance(i, int) and i >= 0 for i in pos):
        return tuple(pos)
    return ()


def _metric_value(row: Any, metric: str) -> float | None:
    result = row.record.get("result")
    if isinstance(result, Mapping) and isinstance(result.get(metric), int | float):
        value = float(result[metric])
    else:
        summary = (row.record.get("metrics_summary") or {}).get(metric)
        if not isinstance(summary, Mapping) or not isinstance(summary.get("last"), int | float):
            return None
        value = float(summary["last"])
    return value if math.isfinite(value) else None


def _main_metric(rows: Sequence[Any], meta: Mapping[str, Any], metric: str | None) -> str | None:
    if metric:
        return metric
    for key in ("metric", "main_metric"):
        if isinstance(meta.get(key), str):
            return str(meta[key])
    for row in rows:
        result = row.record.get("result")
        if isinstance(result, Mapping):
            for key, value in result.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    return str(key)
        names = list(row.record.get("metrics_summary") or {})
        if names:
            return str(names[0])
    return None


def _axes(rows: Sequence[Any], ndim: int, meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each axis's name and the label of each index along it.

    The sweep runner's own description names the axes when it wrote one; otherwise the axis
    is named by the parameter whose value follows the position along it.
    """
    given = meta.get("axes")
    if isinstance(given, list) and len(given) == ndim:
        return [
            {
                "name": str(a.get("name", f"axis {i}")),
                "labels": [str(v) for v in a.get("values", [])],
            }
            for i, a in enumerate(given)
            if isinstance(a, Mapping)
        ]
    axes = []
    for axis in range(ndim):
        size = 1 + max(_position(r)[axis] for r in rows)
        name, labels = _axis_param(rows, axis, size)
        axes.append({"name": name, "labels": labels})
    return axes


def _axis_param(rows: Sequence[Any], axis: int, size: int) -> tuple[str, list[str]]:
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row.params))
    for key in keys:
        values: dict[int, str] = {}
        consistent = True
        for row in rows:
            idx = _position(row)[axis]
            text = repr(row.params.get(key))
            if values.setdefault(idx, text) != text:
                consistent = False
                break
        if consistent and len(set(values.values())) > 1:
            return key, [_unquote(values.get(i, "")) for i in range(size)]
    return f"axis {axis}", [str(i) for i in range(size)]


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == "'" else text


def sweep_layout(
    sweep_id: str, rows: Sequence[Any], meta: Mapping[str, Any], metric: str | None
) -> dict[str, Any]:
    """The data of the sweep page: cells by position, status counts, axes, verdict."""
    positioned = [r for r in rows if _position(r)]
    ndims = {len(_position(r)) for r in positioned}
    ndim = ndims.pop() if len(ndims) == 1 else 0
    if ndim == 0:
        positioned = []
    main = _main_metric(rows, meta, metric)
    cells: dict[tuple[int, ...], dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (_position(r), r.id)):
        pos = _position(row) if ndim else (len(cells),)
        cell = cells.setdefault(
            pos,
            {"position": list(pos), "config_name": None, "runs": [], "values": []},
        )
        sweep = row.record.get("sweep") or {}
        cell["config_name"] = cell["config_name"] or sweep.get("config_name") or row.name
        cell["runs"].append({"id": row.id, "status": row.status, "repeat": sweep.get("repeat")})
        value = _metric_value(row, main) if main else None
        if value is not None and row.status == "completed":
            cell["values"].append(value)
    for cell in cells.values():
        values = cell.pop("values")
        cell["value"] = sum(values) / len(values) if values else None
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    axes = _axes(positioned, ndim, meta) if ndim else []
    grid = None
    if ndim == 2:
        shape = [len(a["labels"]) for a in axes]
        grid = [[None] * shape[1] for _ in range(shape[0])]
        for pos, cell in cells.items():
            if pos[0] < shape[0] and pos[1] < shape[1]:
                grid[pos[0]][pos[1]] = cell["value"]
    report = meta.get("report") if isinstance(meta.get("report"), Mapping) else {}
    verdict = meta.get("verdict", (report or {}).get("verdict"))
    return {
        "sweep_id": sweep_id,
        "name": meta.get("name") or (rows[0].name if rows else sweep_id),
        "metric": main,
        "mode": meta.get("mode"),
        "axes": axes,
        "grid": grid,
        "cells": list(cells.values()),
        "statuses": counts,
        "runs": len(rows),
        "verdict": verdict,
        "report": report or None,
    }
