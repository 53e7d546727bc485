"""Downsampling long metric histories for charts, keeping every bucket's extremes.

A chart a few thousand pixels wide cannot show a million points, but a plain stride would hide
spikes (a loss blowing up for ten steps). Splitting the series into buckets and keeping each
bucket's minimum and maximum, in their original order, draws the same envelope as the full
data with a few thousand points.

>>> import numpy as np
>>> x, y = minmax_downsample(np.arange(1_000_000), np.random.rand(1_000_000), buckets=2000)
>>> len(x) <= 4002
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["minmax_downsample"]


def minmax_downsample(
    x: np.ndarray, y: np.ndarray, buckets: int = 2000
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the first point, the last point, and the min and max of ``y`` in each of
    ``buckets`` equal runs of points, in their original order.

    Series no longer than ``2 * buckets`` points are returned unchanged. NaN values count as
    extremes (``argmin`` finds them first), so a diverged run still shows where it diverged.
    """
    import numpy as np

    n = len(y)
    if len(x) != n:
        raise ValueError(f"x has {len(x)} points but y has {n}")
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    if n <= 2 * buckets:
        return x, y
    size = n // buckets
    body = buckets * size
    # Reshape a view: one row per bucket; the tail (fewer than `size` points) is its own bucket.
    rows = y[:body].reshape(buckets, size)
    starts = np.arange(buckets) * size
    lo = rows.argmin(axis=1) + starts
    hi = rows.argmax(axis=1) + starts
    picks = [np.minimum(lo, hi), np.maximum(lo, hi)]
    if body < n:
        tail = y[body:]
        picks.append(np.array([body + int(tail.argmin()), body + int(tail.argmax())]))
    index = np.concatenate([np.array([0]), np.stack(picks[:2], axis=1).ravel(), *picks[2:]])
    index = np.concatenate([index, np.array([n - 1])])
    index = np.unique(index)  # sorted, and drops the duplicates where min and max coincide
    return x[index], y[index]
