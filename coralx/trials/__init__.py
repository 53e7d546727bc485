"""The trial decorators on coralx: ``from decorators import setup, trial, verify,
VerificationResult`` becomes ``from coralx.trials import setup, trial, verify,
VerificationResult``, and the file runs with ``python file.py`` or ``coralx sweep run file.py``
(see ``docs/trials.md``). Every combination is a coralx run of one sweep.

>>> from coralx.trials import setup, trial, verify, VerificationResult
"""

from __future__ import annotations

from .decorators import VerificationResult, setup, trial, verify

__all__ = ["VerificationResult", "setup", "trial", "verify"]
