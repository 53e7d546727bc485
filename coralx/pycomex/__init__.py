"""PyComex on coralx: ``from pycomex import Experiment, file_namespace, folder_path`` becomes
``from coralx.pycomex import Experiment, file_namespace, folder_path`` and the module runs as
before, each run also a coralx run record (see ``docs/pycomex.md``).

>>> from coralx.pycomex import Experiment, file_namespace, folder_path
"""

from __future__ import annotations

from .experiment import Experiment, ExperimentMixin, PyComexError
from .params import ParameterError
from .utils import file_namespace, folder_path

__all__ = [
    "Experiment",
    "ExperimentMixin",
    "ParameterError",
    "PyComexError",
    "file_namespace",
    "folder_path",
]
