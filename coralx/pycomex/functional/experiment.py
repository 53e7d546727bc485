"""``from pycomex.functional.experiment import Experiment``, on coralx."""

from __future__ import annotations

from ..experiment import Experiment

__all__ = ["Experiment"]
