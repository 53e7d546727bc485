"""A sweep's configurations laid out by its shape, for the sweep page.

Every run of a sweep carries ``sweep.position`` (its index along each axis of the sweep's
shape) and ``sweep.repeat``. Cells are configurations; repeats of one configuration share a
cell, whose value is the mean of their main metric.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .records import flatten_params

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


def _axes(
    points: Sequence[tuple[tuple[int, ...], Mapping[str, Any]]], shape: Sequence[int]
) -> list[dict[str, Any]]:
    """Each axis's name and the label of each index along it: the axis is named by the
    parameter whose value follows the position along it (``points`` are (position, params)
    pairs, from the sweep's plan or from its runs)."""
    return [
        dict(zip(("name", "labels"), _axis_param(points, axis, size)))
        for axis, size in enumerate(shape)
    ]


def _axis_param(
    points: Sequence[tuple[tuple[int, ...], Mapping[str, Any]]], axis: int, size: int
) -> tuple[str, list[str]]:
    keys: dict[str, None] = {}
    for _pos, params in points:
        keys.update(dict.fromkeys(params))
    for key in keys:
        if key == "name":
            continue
        values: dict[int, str] = {}
        consistent = True
        for pos, params in points:
            text = _label(params.get(key))
            if values.setdefault(pos[axis], text) != text:
                consistent = False
                break
        if consistent and len(set(values.values())) > 1:
            return key, [values.get(i, "") for i in range(size)]
    return f"axis {axis}", [str(i) for i in range(size)]


def _label(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _plan(meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The sweep runner's plan: every configuration with its position, run or not."""
    configs = meta.get("configs")
    if not isinstance(configs, list):
        return []
    plan = []
    for c in configs:
        if isinstance(c, Mapping) and isinstance(c.get("position"), list):
            config = c.get("config")
            params: Mapping[str, Any] = config if isinstance(config, Mapping) else {}
            plan.append(
                {
                    "position": tuple(int(i) for i in c["position"]),
                    "config_hash": c.get("config_hash"),
                    "name": c.get("name"),
                    "params": flatten_params(params),
                }
            )
    return plan


def sweep_layout(
    sweep_id: str, rows: Sequence[Any], meta: Mapping[str, Any], metric: str | None
) -> dict[str, Any]:
    """The data of the sweep page: cells by position, status counts, axes, verdict."""
    plan = _plan(meta)
    main = _main_metric(rows, meta, metric)
    cells: dict[tuple[int, ...], dict[str, Any]] = {}
    for item in plan:
        cells[item["position"]] = _cell(item["position"], item["name"])
    positions = {_position(r) for r in rows}
    ndim_of_runs = {len(p) for p in positions if p}
    for row in sorted(rows, key=lambda r: (_position(r), r.created or 0, r.id)):
        pos = _position(row) if len(ndim_of_runs) == 1 and _position(row) else (len(cells),)
        sweep = row.record.get("sweep") or {}
        cell = cells.setdefault(pos, _cell(pos, sweep.get("config_name") or row.name))
        cell["runs"].append({"id": row.id, "status": row.status, "repeat": sweep.get("repeat")})
        value = _metric_value(row, main) if main else None
        if value is not None and row.status == "completed":
            cell["values"].append(value)
    for cell in cells.values():
        values = cell.pop("values")
        cell["value"] = sum(values) / len(values) if values else None
    shape = _shape(meta, cells)
    points = [(item["position"], item["params"]) for item in plan] or [
        (_position(r), r.params) for r in rows if _position(r)
    ]
    axes = _axes(points, shape) if shape else []
    # Axes of length one (a sweep of one base config over a grid) do not make a dimension.
    wide = [i for i, size in enumerate(shape) if size > 1]
    grid = None
    grid_axes = None
    if len(wide) == 2:
        rows_axis, cols_axis = wide
        grid_axes = wide
        grid = [[None] * shape[cols_axis] for _ in range(shape[rows_axis])]
        for pos, cell in cells.items():
            if len(pos) == len(shape):
                grid[pos[rows_axis]][pos[cols_axis]] = cell["value"]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    not_run = sum(1 for cell in cells.values() if not cell["runs"])
    if not_run:
        counts["not run"] = not_run
    verdict = meta.get("verdict")
    if isinstance(verdict, Mapping):
        verdict = verdict.get("verdict")
    return {
        "sweep_id": sweep_id,
        "name": meta.get("name") or (rows[0].name if rows else sweep_id),
        "status": meta.get("status"),
        "metric": main,
        "mode": meta.get("mode"),
        "shape": shape,
        "axes": axes,
        "grid": grid,
        "grid_axes": grid_axes,
        "cells": [cells[p] for p in sorted(cells)],
        "statuses": counts,
        "runs": len(rows),
        "verdict": verdict,
    }


def _cell(position: tuple[int, ...], name: Any) -> dict[str, Any]:
    return {"position": list(position), "config_name": name, "runs": [], "values": []}


def _shape(meta: Mapping[str, Any], cells: Mapping[tuple[int, ...], Any]) -> list[int]:
    shape = meta.get("shape")
    if isinstance(shape, list) and shape and all(isinstance(i, int) for i in shape):
        return list(shape)
    dims = {len(p) for p in cells}
    if len(dims) != 1:
        return []
    ndim = dims.pop()
    return [1 + max(p[axis] for p in cells) for axis in range(ndim)]
