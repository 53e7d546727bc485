"""Torch tensors in and out, without pickle and keeping bf16 and float8 bit-exact.

torch is optional: this module is imported only when a torch tensor is staged or
``framework="torch"`` is asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidValue

__all__ = ["numpy_to_torch", "torch_to_numpy"]

# torch dtypes numpy has no type for: move them as same-width integers, then relabel.
_VIA_INT = {
    "bfloat16": ("int16", "bfloat16"),
    "float8_e4m3fn": ("uint8", "float8_e4m3fn"),
    "float8_e5m2": ("uint8", "float8_e5m2"),
    "float8_e8m0fnu": ("uint8", "float8_e8m0fnu"),
}


def torch_to_numpy(tensor: Any) -> np.ndarray[Any, Any]:
    """A numpy array with the tensor's exact bits (on the CPU, detached, contiguous)."""
    import torch

    t = tensor.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    name = str(t.dtype).removeprefix("torch.")
    if name in _VIA_INT:
        int_name, ml_name = _VIA_INT[name]
        import ml_dtypes

        return t.view(getattr(torch, int_name)).numpy().view(getattr(ml_dtypes, ml_name))
    try:
        return t.numpy()
    except TypeError as exc:
        raise InvalidValue(f"cannot store a torch tensor of dtype {t.dtype}: {exc}") from None


def numpy_to_torch(array: np.ndarray[Any, Any]) -> Any:
    """A torch tensor sharing the array's memory, with the same bits and the matching dtype."""
    import torch

    name = array.dtype.name
    if name in _VIA_INT:
        int_name, _ = _VIA_INT[name]
        ints = array.view(np.dtype(int_name))
        return torch.from_numpy(ints).view(getattr(torch, name))
    return torch.from_numpy(array)
