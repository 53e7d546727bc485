"""``from pycomex.functional.mixin import ExperimentMixin``, on coralx."""

from __future__ import annotations

from ..experiment import ExperimentMixin

__all__ = ["ExperimentMixin"]
