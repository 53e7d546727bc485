"""Min/max downsampling keeps every bucket's extremes and the ends of the series."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coralx.web.downsample import minmax_downsample


def test_short_series_unchanged() -> None:
    x = np.arange(10.0)
    y = np.sin(x)
    dx, dy = minmax_downsample(x, y, buckets=5)
    assert dx is x and dy is y


def test_spike_survives() -> None:
    n = 1_000_000
    y = np.zeros(n)
    y[123_457] = 50.0  # a one-step blow-up
    y[777_777] = -3.0
    x, out = minmax_downsample(np.arange(n, dtype=np.float64), y, buckets=2000)
    assert len(out) <= 4002
    assert out.max() == 50.0 and out.min() == -3.0
    assert 123_457 in x and 777_777 in x
    assert x[0] == 0 and x[-1] == n - 1
    assert np.all(np.diff(x) > 0)


def test_nan_is_kept() -> None:
    y = np.ones(10_000)
    y[5000] = np.nan
    x, _ = minmax_downsample(np.arange(10_000), y, buckets=100)
    assert 5000 in x


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=3000),
    st.integers(1, 200),
)
def test_extremes_of_every_bucket_kept(values: list[float], buckets: int) -> None:
    y = np.array(values)
    x = np.arange(len(y))
    dx, dy = minmax_downsample(x, y, buckets=buckets)
    assert np.array_equal(dy, y[dx])  # points are real points, in order
    assert np.all(np.diff(dx) > 0)
    assert dy.max() == y.max() and dy.min() == y.min()
    if len(y) > 2 * buckets:
        size = len(y) // buckets
        kept = set(dx.tolist())
        for b in range(buckets):
            row = y[b * size : (b + 1) * size]
            assert b * size + int(row.argmin()) in kept
            assert b * size + int(row.argmax()) in kept
        assert len(dx) <= 2 * buckets + 4


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        minmax_downsample(np.arange(3), np.arange(4))
    with pytest.raises(ValueError):
        minmax_downsample(np.arange(3), np.arange(3), buckets=0)
