"""What an executor runs (a :class:`Task`) and what it hands back (an :class:`Outcome`).

Both are plain JSON, so a task crosses a process boundary (subprocess, fork, Ray) without
pickling user code: the function travels as a reference (:class:`FunctionRef`, a module or a
file plus a qualified name) and is imported where it runs. This module imports only the
standard library: it is on the path of every child process.
"""

from __future__ import annotations

import importlib
import os
import sys

# Not `from typing import ...`: importing typing is a measurable part of a child's start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


__all__ = ["FunctionRef", "Outcome", "Task"]

# Modules loaded from a script file get this name prefix, so a child can tell they must be
# loaded from the file again rather than imported by name.
SCRIPT_MODULE_PREFIX = "_coralx_script_"

# In-process registry for executors that share memory with the parent (inline, fork): the
# function object itself, so even a function that cannot be imported by name runs there.
_LOCAL: dict[str, Any] = {}


class FunctionRef:
    """Where a function lives: an importable module, or a script file, and its qualname."""

    __slots__ = ("file", "local_key", "module", "pickled", "qualname")

    def __init__(
        self,
        qualname: str,
        module: str | None = None,
        file: str | None = None,
        local_key: str | None = None,
        pickled: bytes | None = None,
    ) -> None:
        self.qualname = qualname
        self.module = module
        self.file = file
        self.local_key = local_key
        #: The object itself, by value (cloudpickle), for faces whose users define functions
        #: in notebooks or inside other functions (``coralx.pyexp``). It travels only from the
        #: user's own process to the child that runs it; nothing read from a store is unpickled.
        self.pickled = pickled

    def to_dict(self) -> dict[str, Any]:
        return {
            "qualname": self.qualname,
            "module": self.module,
            "file": self.file,
            "local_key": self.local_key,
            "pickled": self.pickled,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FunctionRef) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.qualname, self.module, self.file))

    def __repr__(self) -> str:
        return f"FunctionRef({self.label!r})"

    @classmethod
    def of(cls, obj: Any, qualname: str | None = None, by_value: bool = False) -> FunctionRef:
        """A reference to ``obj`` (a function or an experiment defined at module level).

        ``by_value=True`` also carries the object itself (cloudpickle), so a child process can
        run a function defined in a notebook or inside another function."""
        module_name = getattr(obj, "__module__", None) or "__main__"
        name = str(qualname or getattr(obj, "__qualname__", None) or getattr(obj, "__name__", ""))
        module = sys.modules.get(module_name)
        spec = getattr(module, "__spec__", None)
        key = f"{module_name}:{name}:{id(obj)}"
        _LOCAL[key] = obj
        if by_value:
            file = getattr(module, "__file__", None)
            return cls(
                qualname=name,
                module=None if module_name == "__main__" else module_name,
                file=os.path.abspath(file) if file else None,
                local_key=key,
                pickled=_pickle_by_value(obj),
            )
        if module_name == "__main__" or module_name.startswith(SCRIPT_MODULE_PREFIX) or not spec:
            # The module's file when it holds the object under its name; else the file the
            # function's code came from: under `python -m cProfile train.py` (or pdb, or a
            # debugger) the __main__ module is the launcher's.
            file = getattr(module, "__file__", None)
            if not _holds(module, name, obj):
                file = _source_file(obj) or file
            return cls(qualname=name, file=os.path.abspath(file) if file else None, local_key=key)
        return cls(qualname=name, module=module_name, local_key=key)

    @property
    def label(self) -> str:
        return f"{self.module or self.file}:{self.qualname}"

    def load(self, prefer_local: bool = False) -> Any:
        """Import the module (or load the script) and return the object."""
        if prefer_local and self.local_key in _LOCAL:
            return _LOCAL[self.local_key]
        if self.pickled is not None:
            import cloudpickle

            return cloudpickle.loads(self.pickled)
        if self.module is not None:
            obj: Any = importlib.import_module(self.module)
        elif self.file is not None:
            obj = load_script(self.file)
        else:
            raise RuntimeError(
                f"{self.qualname} was defined interactively and cannot be imported in another "
                "process; define it in a file, or use executor='inline'"
            )
        for part in self.qualname.split("."):
            if part == "<locals>":
                raise RuntimeError(
                    f"{self.qualname} is defined inside a function and cannot be imported in "
                    "another process; define it at module level, or use executor='inline'/'fork'"
                )
            obj = getattr(obj, part)
        return obj


def _pickle_by_value(obj: Any) -> bytes:
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - cloudpickle is a dependency of the pyexp face
        raise RuntimeError(
            "running a function by value in another process needs cloudpickle: "
            "pip install 'coralx[pyexp]'"
        ) from None
    fn = getattr(obj, "fn", None)
    if fn is not None and callable(fn):
        # An experiment object: only what the child runs travels (its function, callbacks and
        # hooks), not its report, configs or store.
        from types import SimpleNamespace

        obj = SimpleNamespace(
            fn=fn,
            callbacks=list(getattr(obj, "callbacks", [])),
            hooks=dict(getattr(obj, "hooks", {})),
        )
    return bytes(cloudpickle.dumps(obj))


def _holds(module: Any, qualname: str, obj: Any) -> bool:
    """Whether ``module`` has ``obj`` at ``qualname`` (the way a child will look it up)."""
    node = module
    for part in qualname.split("."):
        node = getattr(node, part, None)
        if node is None:
            return False
    return node is obj


def _source_file(obj: Any) -> str | None:
    """The source file of a function (or of an experiment's function), if it is a real file."""
    fn = getattr(obj, "fn", None) or getattr(obj, "__wrapped__", None) or obj
    code = getattr(fn, "__code__", None)
    path = getattr(code, "co_filename", None)
    if isinstance(path, str) and not path.startswith("<") and os.path.isfile(path):
        return path
    return None


def load_script(path: str) -> Any:
    """Load a script file as a module (not as ``__main__``, so its main block does not run)."""
    import importlib.util

    path = os.path.abspath(path)
    name = SCRIPT_MODULE_PREFIX + _slug(path)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path} as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _slug(path: str) -> str:
    import hashlib

    stem = os.path.splitext(os.path.basename(path))[0]
    safe = "".join(c if c.isalnum() else "_" for c in stem)
    return f"{safe}_{hashlib.sha1(path.encode()).hexdigest()[:8]}"


_TASK_FIELDS: dict[str, Any] = {
    "config": dict,
    "name": "",
    "index": 0,
    "position": list,
    "config_hash": "",
    "experiment": "",
    "experiment_id": None,
    "sweep_id": None,
    "repo": None,
    "parent_experiment": None,
    "tags": list,
    "description": None,
    "context": dict,
    "seeds": dict,
    "repeat": None,
    "testing": False,
    "out_dir": None,
    "log_dir": None,
    "stream": False,
    "sys_path": list,
    "code": None,
}


class Task:
    """One configuration to run: the function, its config, and where its record goes.

    A plain class rather than a dataclass: this module is imported by every child process,
    and ``dataclasses`` (with ``inspect``) would be most of its import time.
    """

    fn: FunctionRef
    config: dict[str, Any]
    name: str
    index: int
    position: list[int]
    config_hash: str
    experiment: str
    experiment_id: str | None
    sweep_id: str | None
    repo: str | None
    parent_experiment: str | None
    tags: list[str]
    description: str | None
    context: dict[str, Any]
    seeds: dict[str, int]
    repeat: int | None
    testing: bool
    out_dir: str | None
    log_dir: str | None
    stream: bool
    sys_path: list[str]
    #: The code info the sweep captured once (``experiments.capture_code``) for every record.
    code: dict[str, Any] | None

    def start_run(self, tracker: Any) -> None:
        """Start this configuration's record with ``tracker`` (under its pre-assigned id)."""
        tracker.start(
            self.run_name,
            description=self.description,
            # The configuration's name is the run's name (and sweep.config_name), not a param:
            # the runs table would show it twice.
            params={k: v for k, v in self.config.items() if k != "name"},
            tags=list(self.tags),
            parent_experiment=self.parent_experiment,
            experiment_id=self.experiment_id,
            sweep=self.sweep_info,
            code=self.code,
        )

    def __init__(self, fn: FunctionRef, **values: Any) -> None:
        if not values.keys() <= _TASK_FIELDS.keys():
            unknown = set(values) - set(_TASK_FIELDS)
            raise TypeError(f"unknown task fields: {sorted(unknown)}")
        self.fn = fn
        fields = self.__dict__
        for key, default in _TASK_FIELDS.items():
            fields[key] = (
                values[key] if key in values else (default() if callable(default) else default)
            )

    def to_dict(self) -> dict[str, Any]:
        fields = self.__dict__
        if len(fields) == len(_TASK_FIELDS) + 1:  # the fields and fn, nothing else: copy
            out = dict(fields)
        else:
            out = {key: fields[key] for key in _TASK_FIELDS}
        out["context"] = plain_data(self.context)
        out["fn"] = self.fn.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        data = dict(data)
        fn = FunctionRef(**data.pop("fn"))
        return cls(fn, **data)

    def to_json(self) -> str:
        import json

        return json.dumps(self.to_dict())

    @property
    def run_name(self) -> str:
        """The record's name: the experiment's and the configuration's (``digits/hidden64``),
        so runs of one sweep are told apart; ``--name`` globs match either part."""
        if not self.name or self.name == self.experiment:
            return self.experiment
        return f"{self.experiment}/{self.name}"

    @property
    def sweep_info(self) -> dict[str, Any]:
        """The record's ``sweep`` field (see the contract for experiment records)."""
        return {
            "sweep_id": self.sweep_id,
            "experiment": self.experiment,
            "config_name": self.name,
            "config_hash": self.config_hash,
            "position": list(self.position),
            "repeat": self.repeat if self.repeat is not None else 0,
        }


class Outcome:
    """What became of a task. ``error`` holds ``type``, ``message``, and where known
    ``traceback``, ``returncode`` and ``stderr_tail``. ``crashed`` is True when the process
    running the task died, so no record was finalised by it."""

    __slots__ = (
        "context_update",
        "crashed",
        "duration",
        "error",
        "experiment_id",
        "metrics",
        "result",
        "status",
    )

    def __init__(
        self,
        status: str,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        duration: float = 0.0,
        experiment_id: str | None = None,
        metrics: dict[str, dict[str, Any]] | None = None,
        context_update: dict[str, Any] | None = None,
        crashed: bool = False,
    ) -> None:
        self.status = status
        self.result = result
        self.error = error
        self.duration = duration
        self.experiment_id = experiment_id
        self.metrics = metrics if metrics is not None else {}
        self.context_update = context_update
        self.crashed = crashed

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.__slots__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        return cls(**data)

    def __repr__(self) -> str:
        return f"<Outcome {self.status}>"


def plain_data(value: Any) -> Any:
    """Plain data of exactly the built-in types (what ``marshal`` carries faithfully)."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if isinstance(value, dict):
        return {k: plain_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_data(v) for v in value]
    for base in (bool, int, float, str):
        if isinstance(value, base):
            return base(value)
    return value


def signal_name(returncode: int) -> str:
    import signal

    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def crash_outcome(task: Task, returncode: int | None, stderr_tail: str, duration: float) -> Outcome:
    """The outcome of a task whose process died without reporting back."""
    if returncode is not None and returncode < 0:
        how = f"was killed by {signal_name(returncode)}"
        kind = "Crashed"
    elif returncode is not None:
        how = f"exited with status {returncode} without reporting a result (os._exit or exit())"
        kind = "Exited"
    else:
        how = "ended without reporting a result"
        kind = "Crashed"
    return Outcome(
        status="failed",
        error={
            "type": kind,
            "message": f"the process running {task.name!r} {how}",
            "returncode": returncode,
            "stderr_tail": stderr_tail,
        },
        duration=duration,
        experiment_id=task.experiment_id,
        crashed=True,
    )


_FAULT_REPORT = b"Fatal Python error:"  # how faulthandler's report of a crash begins


def read_tail(path: str | None, limit: int = 4000) -> str:
    """The last ``limit`` bytes of a log file, as text. When the process crashed,
    faulthandler's report (every thread's stack, the extension modules) can be longer than
    ``limit`` on its own; the run's last output before it is what says most, so the tail
    is then the end of that output and the start of the report, ``limit`` bytes in all."""
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            window = max(limit, 64 * 1024)  # a report of many deep stacks fits in this
            f.seek(max(0, size - window))
            data = f.read()
    except OSError:
        return ""
    fault = data.rfind(_FAULT_REPORT)
    if fault < 0 or len(data) - fault <= limit // 2:
        data = data[-limit:]
    else:
        before = data[max(0, fault - limit // 2) : fault]
        data = before + data[fault : fault + limit - len(before)]
    return data.decode("utf-8", errors="replace")
