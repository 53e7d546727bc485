"""A sweep's configurations laid out by its shape, for the sweep page.

Every run of a sweep carries ``sweep.position`` (its index along each axis of the sweep's
shape), ``sweep.config_hash`` and ``sweep.repeat``. A cell is one configuration of the sweep's
plan, valued by its latest run; the repeats of a configuration (the axis ``coralx.repeat``
adds) share a cell, whose value is the mean of theirs, and says so.
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
    """The data of the sweep page: cells by position, status counts, axes, verdict.

    With the sweep's plan (its record), a cell is one configuration of the plan, valued by the
    latest run of that configuration (as ``coralx sweep show`` does); a repeat axis
    (``coralx.repeat``) is folded into the cells, each the mean of its repeats and labelled so.
    Runs of configurations the plan no longer holds (an earlier ``--set``) are counted apart,
    never mixed into a cell."""
    plan = _plan(meta)
    main = _main_metric(rows, meta, metric)
    full_shape = _shape(meta, {item["position"]: None for item in plan})
    repeat_axis = _repeat_axis(plan, full_shape) if plan else None
    if plan:
        cells, outside = _plan_cells(plan, rows, main, repeat_axis)
    else:
        cells, outside = _position_cells(rows, main), 0
    keep = [i for i in range(len(full_shape)) if i != repeat_axis]
    shape = [full_shape[i] for i in keep] if plan else _shape(meta, cells)
    points = [(_without(item["position"], repeat_axis), item["params"]) for item in plan] or [
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
        "repeats": full_shape[repeat_axis] if repeat_axis is not None else None,
        "cells": [cells[p] for p in sorted(cells)],
        "statuses": counts,
        "runs": len(rows),
        "runs_outside_plan": outside,
        "verdict": verdict,
    }


def _without(position: tuple[int, ...], axis: int | None) -> tuple[int, ...]:
    return position if axis is None else position[:axis] + position[axis + 1 :]


def _repeat_axis(plan: Sequence[Mapping[str, Any]], shape: Sequence[int]) -> int | None:
    """The axis ``coralx.repeat`` made: every configuration's ``repeat`` is its index there."""
    for axis in reversed(range(len(shape))):
        if shape[axis] > 1 and all(
            len(item["position"]) == len(shape)
            and item["params"].get("repeat") == item["position"][axis]
            for item in plan
        ):
            return axis
    return None


def _config_hash(row: Any) -> Any:
    sweep = row.record.get("sweep")
    return sweep.get("config_hash") if isinstance(sweep, Mapping) else None


def _plan_cells(
    plan: Sequence[Mapping[str, Any]],
    rows: Sequence[Any],
    main: str | None,
    repeat_axis: int | None,
) -> tuple[dict[tuple[int, ...], dict[str, Any]], int]:
    """One cell per configuration of the plan (repeats folded in), valued by the latest run of
    each configuration; and how many runs belong to no configuration of the plan."""
    by_hash: dict[Any, list[Any]] = {}
    for row in sorted(rows, key=lambda r: (r.created or 0, r.id)):
        by_hash.setdefault(_config_hash(row), []).append(row)
    cells: dict[tuple[int, ...], dict[str, Any]] = {}
    used: set[Any] = set()
    for item in plan:
        pos = _without(item["position"], repeat_axis)
        name = item["name"]
        repeat = item["position"][repeat_axis] if repeat_axis is not None else None
        if repeat is not None and isinstance(name, str):
            name = name.removesuffix(f"_r{repeat}")
        cell = cells.setdefault(pos, _cell(pos, name))
        runs = by_hash.get(item["config_hash"], []) if item["config_hash"] not in used else []
        used.add(item["config_hash"])
        for n, row in enumerate(runs, 1):
            label = f"r{repeat} " if repeat is not None else ""
            label += "run" if len(runs) == 1 else f"attempt {n} of {len(runs)}"
            cell["runs"].append({"id": row.id, "status": row.status, "label": label.strip()})
        latest = runs[-1] if runs else None
        if latest is not None and main and latest.status == "completed":
            value = _metric_value(latest, main)
            if value is not None:
                cell["values"].append(value)
        cell["configurations"] += 1
    for cell in cells.values():
        values = cell.pop("values")
        cell["value"] = sum(values) / len(values) if values else None
        total = cell["configurations"]
        if repeat_axis is not None:
            cell["aggregate"] = f"mean of {len(values)} of {total} repeats"
        else:
            cell["aggregate"] = "latest run" if values else None
    outside = sum(len(v) for h, v in by_hash.items() if h not in used)
    return cells, outside


def _position_cells(rows: Sequence[Any], main: str | None) -> dict[tuple[int, ...], dict[str, Any]]:
    """Without a plan: cells by the runs' own positions, each the mean of its completed runs."""
    cells: dict[tuple[int, ...], dict[str, Any]] = {}
    positions = {_position(r) for r in rows}
    ndim_of_runs = {len(p) for p in positions if p}
    for row in sorted(rows, key=lambda r: (_position(r), r.created or 0, r.id)):
        pos = _position(row) if len(ndim_of_runs) == 1 and _position(row) else (len(cells),)
        sweep = row.record.get("sweep") or {}
        cell = cells.setdefault(pos, _cell(pos, sweep.get("config_name") or row.name))
        cell["runs"].append({"id": row.id, "status": row.status, "label": row.id[-6:]})
        value = _metric_value(row, main) if main else None
        if value is not None and row.status == "completed":
            cell["values"].append(value)
    for cell in cells.values():
        values = cell.pop("values")
        cell["value"] = sum(values) / len(values) if values else None
        cell["aggregate"] = f"mean of {len(values)} runs" if values else None
    return cells


def _cell(position: tuple[int, ...], name: Any) -> dict[str, Any]:
    return {
        "position": list(position),
        "config_name": name,
        "runs": [],
        "values": [],
        "configurations": 0,
    }


def _shape(meta: Mapping[str, Any], cells: Mapping[tuple[int, ...], Any]) -> list[int]:
    shape = meta.get("shape")
    if isinstance(shape, list) and shape and all(isinstance(i, int) for i in shape):
        return list(shape)
    dims = {len(p) for p in cells}
    if len(dims) != 1:
        return []
    ndim = dims.pop()
    return [1 + max(p[axis] for p in cells) for axis in range(ndim)]
