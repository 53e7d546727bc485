"""Values as JSON, the way PyComex stores them: numpy arrays as (nested) lists, numpy scalars
as numbers, tuples and sets as lists.

>>> import numpy as np
>>> to_json({"a": np.arange(3), "b": np.float32(0.5)})
{'a': [0, 1, 2], 'b': 0.5}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["to_json"]


def to_json(value: Any, *, strict: bool = False, finite: bool = False) -> Any:
    """Plain JSON data for ``value``.

    ``strict`` raises TypeError for objects JSON cannot hold; otherwise they become their
    ``repr`` (a record keeps what it can rather than losing the run). ``finite`` turns NaN and
    infinities into None (the store's records hold only finite numbers).
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return None if finite and not math.isfinite(value) else float(value)
    if isinstance(value, Mapping):
        return {str(k): to_json(v, strict=strict, finite=finite) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v, strict=strict, finite=finite) for v in value]
    kind = type(value)
    if kind.__module__ == "numpy" and hasattr(value, "tolist"):  # arrays, numpy scalars
        return to_json(value.tolist(), strict=strict, finite=finite)
    if hasattr(value, "__fspath__"):
        return str(value)
    if strict:
        raise TypeError(f"a {kind.__name__} is not JSON data")
    return repr(value)
