"""What a sweep's report concludes: :class:`Verdict`, and :func:`to_verdict` for what report
functions may return."""

from __future__ import annotations

import enum
from typing import Any

from ..errors import InvalidValue

__all__ = ["Verdict", "to_verdict"]


class Verdict(enum.StrEnum):
    """What a report concludes about the sweep's hypothesis."""

    SUPPORTS = "supports"
    REFUTES = "refutes"
    INCONCLUSIVE = "inconclusive"
    #: The trial decorators' two more: the runs cannot answer, or more runs are wanted.
    INVALID = "invalid"
    CONTINUE = "continue"


def to_verdict(value: Any) -> Verdict | None:
    """A report's return value as a verdict: a :class:`Verdict`, one of its names (any case),
    a bool (True supports, False refutes), or None (no verdict)."""
    if value is None or isinstance(value, Verdict):
        return value
    if isinstance(value, bool):
        return Verdict.SUPPORTS if value else Verdict.REFUTES
    if isinstance(value, str):
        try:
            return Verdict(value.strip().lower())
        except ValueError:
            pass
    raise InvalidValue(
        f"a report returned {value!r}; return 'supports', 'refutes', 'inconclusive', "
        "'invalid', 'continue', a bool, a coralx.Verdict, or None"
    )
