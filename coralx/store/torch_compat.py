"""Torch tensors in and out, without pickle and keeping bf16 and float8 bit-exact.

torch is optional: this module is imported only when a torch tensor is staged or
``framework="torch"`` is asked for.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidValue

__all__ = [
    "OPTIMIZER_PREFIX",
    "ModuleTensors",
    "cpu_copy",
    "is_module",
    "load_module",
    "module_tensors",
    "numpy_to_torch",
    "state_dicts",
    "torch_to_numpy",
]

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


# -- nn.Module and optimizer state: staged as tensors plus a JSON layout -------------------------

OPTIMIZER_PREFIX = "optimizer/"
"""Names of optimizer-state tensors in a commit start with this (module keys never contain
``/``; a module key that does is refused rather than risk a clash)."""


@dataclass
class ModuleTensors:
    """What :func:`module_tensors` gives: the distinct tensors to store, the names that are
    aliases of one of them (tied parameters), and the manifest's ``torch`` section."""

    tensors: dict[str, Any]
    aliases: dict[str, str]
    layout: dict[str, Any]


def is_module(value: object) -> bool:
    """True for a ``torch.nn.Module`` (without importing torch when it is not loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.nn.Module)


def module_tensors(source: Any, optimizer: Any = None) -> ModuleTensors:
    """The tensors of a module's ``state_dict`` (or of a state dict), tied ones once.

    Two names are tied when they are the same view of the same storage (``lm_head.weight``
    and ``embed.weight`` after weight tying): the first name in ``state_dict`` order is
    stored, the others are recorded as its aliases. An optimizer's state is added under
    :data:`OPTIMIZER_PREFIX`: its tensors stored like weights, everything else as JSON.

    Raises :class:`~coralx.errors.InvalidValue` naming the key for a value that is not a
    tensor (a module's ``get_extra_state``), a tensor on the meta device, or a name the
    optimizer's state would take twice.

    >>> parts = module_tensors(model, optimizer=opt)
    >>> parts.aliases
    {'lm_head.weight': 'embed.weight'}
    """
    state = source.state_dict() if is_module(source) else source
    if not isinstance(state, Mapping):
        raise InvalidValue(
            f"stage_weights takes an nn.Module or a mapping of name -> tensor, "
            f"not {type(source).__name__}"
        )
    tensors: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for name, value in state.items():
        _check_module_value(name, value)
        if name.startswith(OPTIMIZER_PREFIX):
            raise InvalidValue(
                f"module key {name!r} starts with {OPTIMIZER_PREFIX!r}, which coralx keeps "
                "for optimizer state; rename the submodule"
            )
        key = _storage_key(value)
        if key is not None and key in seen:
            aliases[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        tensors[name] = value
    layout: dict[str, Any] = {"aliases": dict(aliases)} if aliases else {}
    if optimizer is not None:
        layout["optimizer"] = _encode_optimizer(optimizer, tensors)
    return ModuleTensors(tensors, aliases, layout)


def cpu_copy(module: Any, optimizer: Any = None) -> ModuleTensors:
    """:func:`module_tensors` with every tensor copied to the CPU now: a snapshot to stage
    later (tied names stay aliases)."""
    parts = module_tensors(module, optimizer)
    tensors = {n: t.detach().to("cpu", copy=True) for n, t in parts.tensors.items()}
    return ModuleTensors(tensors, parts.aliases, parts.layout)


def _check_module_value(name: object, value: Any) -> None:
    import torch

    if not isinstance(name, str):
        raise InvalidValue(f"state_dict key {name!r} is not a string")
    if not isinstance(value, torch.Tensor):
        raise InvalidValue(
            f"state_dict entry {name!r} is a {type(value).__name__}, not a tensor "
            "(extra state from get_extra_state?); coralx stores tensors only, never pickles: "
            "pass a state dict without it"
        )
    if value.device.type == "meta":
        raise InvalidValue(
            f"tensor {name!r} is on the meta device and has no data; materialise the module "
            "(module.to_empty(device='cpu') and load its weights) before staging it"
        )


def _storage_key(t: Any) -> tuple[Any, ...] | None:
    """Identical for two tensors that are the same view of the same memory; None for an
    empty tensor (every empty tensor has the same null address)."""
    ptr = t.untyped_storage().data_ptr()
    if ptr == 0 or t.numel() == 0:
        return None
    return (t.device, ptr, t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def _encode_optimizer(optimizer: Any, tensors: dict[str, Any]) -> dict[str, Any]:
    """The optimizer's ``state_dict`` as JSON; its tensors are added to ``tensors``."""
    state = optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer
    if not isinstance(state, Mapping):
        raise InvalidValue(f"optimizer= takes a torch optimizer, not {type(optimizer).__name__}")
    return {
        "class": f"{type(optimizer).__module__}.{type(optimizer).__qualname__}",
        "state_dict": _encode(state, [], tensors),
    }


def _encode(value: Any, path: list[str], tensors: dict[str, Any]) -> Any:
    import torch

    where = "/".join(path)
    if isinstance(value, torch.Tensor):
        name = OPTIMIZER_PREFIX + where
        if name in tensors:
            raise InvalidValue(
                f"optimizer state {where!r} names the same tensor twice after flattening "
                "(a key holding '/'?); rename the key"
            )
        _check_module_value(name, value)
        tensors[name] = value
        return {"$tensor": name}
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value) and not {"$tensor", "$items"} & set(value):
            return {k: _encode(v, [*path, k], tensors) for k, v in value.items()}
        items = []
        for k, v in value.items():
            if not isinstance(k, int | str | float | bool):
                raise InvalidValue(f"optimizer state {where!r} has a key {k!r} JSON cannot hold")
            items.append([k, _encode(v, [*path, str(k)], tensors)])
        return {"$items": items}
    if isinstance(value, list | tuple):
        return [_encode(v, [*path, str(i)], tensors) for i, v in enumerate(value)]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise InvalidValue(
        f"optimizer state {where!r} is a {type(value).__name__}, neither a tensor nor JSON "
        "data; coralx never pickles"
    )


def _decode(value: Any, tensors: Mapping[str, Any]) -> Any:
    if isinstance(value, dict):
        if "$tensor" in value:
            return tensors[value["$tensor"]]
        if "$items" in value:
            return {k: _decode(v, tensors) for k, v in value["$items"]}
        return {k: _decode(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    return value


def state_dicts(
    tensors: Mapping[str, Any], layout: Mapping[str, Any], device: Any = None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(module state dict, optimizer state dict or None) from a commit's torch tensors and
    its manifest's ``torch`` section; tied names share one tensor again."""
    moved = {n: t.to(device) if device is not None else t for n, t in tensors.items()}
    module = {n: t for n, t in moved.items() if not n.startswith(OPTIMIZER_PREFIX)}
    for alias, canonical in (layout.get("aliases") or {}).items():
        if canonical in module:
            module[alias] = module[canonical]
    opt = layout.get("optimizer")
    return module, (_decode(opt["state_dict"], moved) if opt else None)


def load_module(module: Any, state: Mapping[str, Any], strict: bool = True) -> Any:
    """``module.load_state_dict(state, strict)`` with coralx's error for missing and
    unexpected keys; returns torch's ``(missing_keys, unexpected_keys)``."""
    from ..errors import IncompatibleWeights

    own = set(module.state_dict())
    missing = sorted(own - set(state))
    unexpected = sorted(set(state) - own)
    if strict and (missing or unexpected):
        raise IncompatibleWeights(missing, unexpected)
    try:
        return module.load_state_dict(state, strict=strict)
    except RuntimeError as exc:  # shapes that do not fit: torch names each one
        raise IncompatibleWeights(missing, unexpected, str(exc)) from None
