"""``pycomex.functional.cache``'s name, on coralx: the cache of ``e.cache``."""

from __future__ import annotations

from ..cache import ExperimentCache

__all__ = ["ExperimentCache"]
