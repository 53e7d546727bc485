"""The store a PyComex run or a trials file is recorded in."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..repository import Repository

__all__ = ["store_for"]


def store_for(folder: Path) -> Repository:
    """The store ``CORALX_REPO`` names, else the nearest coralx store at or above ``folder``,
    else at or above the current folder;
    if there is none, a new store in ``folder`` (so ``python exp.py`` works in a fresh
    project, as it does with PyComex)."""
    import os

    from ..errors import RepositoryNotFound
    from ..repository import Repository

    named = os.environ.get("CORALX_REPO")
    if named:  # as for the coralx command line
        return Repository.discover(named)
    for start in (folder, None):
        try:
            return Repository.discover(start)
        except RepositoryNotFound:
            continue
    return Repository.init(folder)
