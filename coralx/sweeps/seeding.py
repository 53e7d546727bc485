"""Seeding before each configuration runs.

The keys ``seed``, ``numpy_seed``, ``torch_seed`` and ``pythonhashseed`` are read from the
config (after the setup context, which supplies defaults). ``seed`` seeds Python's ``random``
and stands in for ``numpy_seed`` and ``torch_seed`` when those are absent.

Seeding is best effort and costs nothing when unused: numpy is seeded when a seed is given and
numpy is installed; torch when it is already imported (the user's script imports it) or
``torch_seed`` is given explicitly, because importing torch just to seed it would cost a
second per configuration. ``pythonhashseed`` only takes effect where an interpreter starts:
the subprocess executor starts the child with it; elsewhere it is set in ``os.environ`` for
the processes the run starts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

# Not `from typing import ...`: importing typing is a measurable part of a child's start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


__all__ = ["DEFAULT_BASE_SEED", "SEED_KEYS", "apply_seeds", "config_seed", "seeds_of"]

SEED_KEYS = ("seed", "numpy_seed", "torch_seed", "pythonhashseed")

#: The base seed of a sweep whose experiment sets none (``@coralx.experiment(seed=...)``).
DEFAULT_BASE_SEED = 0


def config_seed(base: int, config_hash: str) -> int:
    """The seed of a configuration that sets none: drawn from the sweep's base seed and the
    configuration's hash, so it is the same on every run of that configuration, whatever the
    sweep around it, and distinct between configurations (31 bits: any seeding API takes it).

    >>> config_seed(0, "3f2a9c0d1e4b5a67") == config_seed(0, "3f2a9c0d1e4b5a67")
    True
    """
    import hashlib

    digest = hashlib.sha256(f"coralx-seed:{base}:{config_hash}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def seeds_of(config: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> dict[str, int]:
    """The seed keys a configuration sets (its own values over the setup context's)."""
    out: dict[str, int] = {}
    for source in (context or {}, config):
        for key in SEED_KEYS:
            value = source.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                out[key] = value
    return out


def apply_seeds(seeds: Mapping[str, int]) -> list[str]:
    """Seed what ``seeds`` asks for; return the names of what was seeded."""
    done: list[str] = []
    base = seeds.get("seed")
    if base is not None:
        import random

        random.seed(base)
        done.append("random")
    numpy_seed = seeds.get("numpy_seed", base)
    if numpy_seed is not None and _available("numpy"):
        import numpy as np

        np.random.seed(numpy_seed % 2**32)
        done.append("numpy")
    torch_seed = seeds.get("torch_seed", base)
    wants_torch = "torch" in sys.modules or "torch_seed" in seeds
    if torch_seed is not None and wants_torch and _seed_torch(torch_seed):
        done.append("torch")
    if "pythonhashseed" in seeds:
        os.environ["PYTHONHASHSEED"] = str(seeds["pythonhashseed"])
        done.append("pythonhashseed")
    return done


def _available(module: str) -> bool:
    import importlib.util

    return module in sys.modules or importlib.util.find_spec(module) is not None


def _seed_torch(seed: int) -> bool:
    if not _available("torch"):
        return False
    import torch

    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return True
