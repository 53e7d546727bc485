"""``file_namespace`` and ``folder_path``, as ``pycomex.utils`` has them.

>>> file_namespace("/work/experiments/train_mlp.py")
'results/train_mlp'
>>> str(folder_path("/work/experiments/train_mlp.py"))
'/work/experiments'
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["file_namespace", "folder_path"]


def file_namespace(file_path: str | os.PathLike[str]) -> str:
    """``results/<module name>``: where an experiment module's runs go, under its folder."""
    return os.path.join("results", os.path.basename(os.fspath(file_path)).split(".")[0])


def folder_path(file_path: str | os.PathLike[str]) -> Path:
    """The absolute folder of ``file_path``."""
    return Path(file_path).resolve().parent
