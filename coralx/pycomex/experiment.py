"""PyComex's ``Experiment`` on coralx: a module of UPPERCASE parameters and one decorated function,
run with ``python exp.py --EPOCHS 5``.

Each run writes the folder PyComex users open (``results/<namespace>/<timestamp>__<id>/`` with
``experiment_log.txt``, ``experiment_meta.json``, ``experiment_data.json``, ``code/`` and the
artifacts; ``debug/`` with ``__DEBUG__``) and is a normal coralx run record made through the
tracker: params, nested data, metrics (``e.track``), every file of the folder as a blob, and the
code snapshot. ``coralx exp list`` and ``coralx ui`` show it beside every other run.

>>> from coralx.pycomex import Experiment, file_namespace, folder_path
>>> EPOCHS: int = 10
>>> @Experiment(base_path=folder_path(__file__), namespace=file_namespace(__file__),
...             glob=globals())
... def experiment(e: Experiment) -> None:
...     for epoch in range(e.EPOCHS):
...         e.track("loss", 1.0 / (epoch + 1))
...     e["results/final"] = 0.1
>>> experiment.run_if_main()
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import shutil
import sys
import textwrap
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .. import _fs
from ..errors import InvalidValue
from .cache import ExperimentCache
from .jsonify import to_json
from .params import (
    SPECIAL_DEFAULTS,
    ParameterError,
    annotation_text,
    comment_descriptions,
    describe_parameters,
    is_parameter,
    parse_cli,
    special_types,
)

if TYPE_CHECKING:
    from ..experiments import ExperimentTracker
    from ..repository import Repository

__all__ = ["Experiment", "ExperimentMixin", "PyComexError"]

LOG_FILE = "experiment_log.txt"
META_FILE = "experiment_meta.json"
DATA_FILE = "experiment_data.json"
CODE_DIR = "code"
TRACK_DIR = ".track"
DEPENDENCIES_FILE = ".dependencies.json"


class PyComexError(InvalidValue):
    """An experiment module that cannot run as written (a missing ``extend`` parent, a module
    without an Experiment, a path that leaves the run folder)."""


@dataclass
class _Hook:
    """One ``@experiment.hook(...)`` registration and where it came from: ``rank`` orders the
    modules from the base (lowest) to the most derived (highest); a module's mixins rank just
    below it, the first included lowest."""

    rank: tuple[int, ...]
    seq: int
    name: str
    fn: Callable[..., Any]
    replace: bool
    default: bool


def _resolve(hooks: Sequence[_Hook]) -> dict[str, list[Callable[..., Any]]]:
    """PyComex's hook rules. Within a module, in file order: a ``default=True`` registration
    is skipped when the hook has an implementation already, ``replace=True`` makes it the only
    one, ``replace=False`` adds it. The modules are resolved from the most derived back to the
    base (as PyComex builds them), a module's list going before what the derived ones made,
    unless it replaced it. So a sub-experiment's hook overrides the parent's default one, a
    parent's ``default=False`` hook replaces the sub-experiment's, and added hooks run base
    first, then mixins, then the sub-experiment's own."""
    out: dict[str, list[Callable[..., Any]]] = {}
    ranks = sorted({h.rank for h in hooks}, reverse=True)
    for rank in ranks:
        level: dict[str, list[Callable[..., Any]]] = {}
        replaced: set[str] = set()
        for hook in sorted((h for h in hooks if h.rank == rank), key=lambda h: h.seq):
            if hook.default and (hook.name in out or hook.name in level):
                continue
            if hook.replace:
                level[hook.name] = [hook.fn]
                replaced.add(hook.name)
            else:
                level.setdefault(hook.name, []).append(hook.fn)
        for name, fns in level.items():
            out[name] = fns if name in replaced else [*fns, *out.get(name, [])]
    return out


_MISSING = object()


class _HookOwner:
    """What experiments and mixins share: registering hooks."""

    _hooks: list[_Hook]

    _REPLACE_DEFAULT = True
    _DEFAULT_DEFAULT = True

    def __init__(self) -> None:
        object.__setattr__(self, "_hooks", [])

    def _level(self) -> int:
        return 0

    def hook(
        self, name: str, replace: bool | None = None, default: bool | None = None
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register ``fn(e, **kwargs)`` under ``name``; ``e.apply_hook(name, ...)`` calls it.

        ``replace=True`` (the default) makes it the hook's only implementation, ``replace=False``
        adds it to the others; ``default=True`` (the default) marks a fallback that a
        sub-experiment's own implementation overrides.
        """
        rep = self._REPLACE_DEFAULT if replace is None else bool(replace)
        dflt = self._DEFAULT_DEFAULT if default is None else bool(default)

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            hooks: list[_Hook] = self._hooks
            hooks.append(_Hook((self._level(), 1, 0), len(hooks), name, fn, rep, dflt))
            return fn

        return register


class ExperimentMixin(_HookOwner):
    """Hooks (and parameter defaults) shared by several experiments: ``mixin =
    ExperimentMixin(glob=globals())`` in a module, then ``experiment.include("mixin.py")`` or
    ``__INCLUDE__ = "mixin.py"``. Its hooks are added to the experiment's (``replace=False``)."""

    _REPLACE_DEFAULT = False
    _DEFAULT_DEFAULT = False

    def __init__(self, glob: dict[str, Any]) -> None:
        super().__init__()
        self.glob = glob
        glob["__mixin__"] = self

    @property
    def parameters(self) -> dict[str, Any]:
        return {k: v for k, v in self.glob.items() if is_parameter(k)}


def _load_module(path: Path) -> Any:
    from ..sweeps.task import load_script

    return load_script(str(path))


def _find_file(name: str, folders: Sequence[Path], what: str) -> Path:
    given = Path(name).expanduser()
    candidates = [given] if given.is_absolute() else [f / given for f in folders] + [given]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    looked = ", ".join(str(c) for c in candidates)
    raise PyComexError(f"{what}: no file {name!r} (looked for {looked})")


class Experiment(_HookOwner):
    """A PyComex experiment. Decorate the main function with it; ``run_if_main()`` at the end of
    the module runs it when the module is the script being run."""

    def __init__(
        self,
        base_path: str | os.PathLike[str],
        namespace: str,
        glob: dict[str, Any],
        debug: bool = False,
        name_format: str = "{date}__{time}__{id}",
        **_ignored: Any,
    ) -> None:
        super().__init__()
        setattr_ = object.__setattr__
        setattr_(self, "base_path", str(base_path))
        setattr_(self, "namespace", str(namespace))
        setattr_(self, "glob", glob)
        setattr_(self, "debug", bool(debug))
        setattr_(self, "name_format", name_format)
        setattr_(self, "_globs", [glob])
        setattr_(self, "func", None)
        setattr_(self, "analyses", [])
        setattr_(self, "_testing", [])
        setattr_(self, "_mixins", [])
        setattr_(self, "dependencies", [])
        setattr_(self, "data", {})
        setattr_(self, "parameters", {})
        setattr_(self, "metadata", {})
        setattr_(self, "path", None)
        setattr_(self, "error", None)
        setattr_(self, "tb", None)
        setattr_(self, "is_running", False)
        setattr_(self, "is_testing", False)
        setattr_(self, "experiment_id", None)
        setattr_(self, "_repo", None)
        setattr_(self, "_tracker", None)
        setattr_(self, "_log_file", None)
        setattr_(self, "_pending_log", [])
        setattr_(self, "cache", ExperimentCache(self))
        self.parameters.update(self._collect_parameters())
        glob["__experiment__"] = self

    # -- decoration and registration -----------------------------------------------------------

    def __call__(self, func: Callable[..., Any]) -> Experiment:
        object.__setattr__(self, "func", func)
        return self

    def _level(self) -> int:
        return len(self._globs) - 1

    def analysis(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Register ``fn(e)``, run after the main function (in the same run)."""
        self.analyses.append(func)
        return func

    def testing(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Register ``fn(e)``, run first when ``__TESTING__`` is true, to shrink the run
        (``e.EPOCHS = 2``). Defined inside the main function (``@e.testing``) it runs at once."""
        self._testing.append((self._level(), func))
        self._apply_testing_if_possible()
        return func

    def include(self, path: str | Sequence[str]) -> None:
        """Add the hooks and parameter defaults of a mixin module (or several)."""
        for item in [path] if isinstance(path, str) else list(path):
            file = _find_file(item, self._folders(), "include")
            module = _load_module(file)
            mixin = getattr(module, "__mixin__", None)
            if not isinstance(mixin, ExperimentMixin):
                raise PyComexError(f"include: {file} defines no ExperimentMixin")
            if all(m is not mixin for _, m in self._mixins):
                self._mixins.append((self._level(), mixin))
                self.dependencies.append(str(file))

    def _folders(self) -> list[Path]:
        """The folders of the modules, the most derived first (where relative paths resolve)."""
        files = [g.get("__file__") for g in reversed(self._globs)]
        return [Path(f).resolve().parent for f in files if f]

    # -- inheritance ---------------------------------------------------------------------------

    @classmethod
    def import_from(cls, experiment_path: str, glob: dict[str, Any]) -> Experiment:
        """The Experiment a module defines (found next to the calling module's file), without
        running it: ``Experiment.import_from("base.py", globals()).run()``."""
        here = glob.get("__file__")
        folders = [Path(here).resolve().parent] if here else []
        file = _find_file(experiment_path, folders, "Experiment.import_from")
        module = _load_module(file)
        found = getattr(module, "__experiment__", None)
        if isinstance(found, Experiment):
            return found
        candidates = [v for v in vars(module).values() if isinstance(v, Experiment)]
        if not candidates:
            raise PyComexError(
                f"{file} defines no Experiment; decorate its main function with "
                "@Experiment(...) or use Experiment.extend there"
            )
        return candidates[-1]

    @classmethod
    def extend(
        cls,
        experiment_path: str,
        base_path: str | os.PathLike[str],
        namespace: str,
        glob: dict[str, Any],
        **settings: Any,
    ) -> Experiment:
        """A sub-experiment of the one in ``experiment_path`` (relative to this module's file):
        it inherits the parent's parameters, main function, hooks and analyses; this module's
        UPPERCASE globals and hooks override the parent's."""
        try:
            parent = cls.import_from(experiment_path, glob)
        except PyComexError as exc:
            raise PyComexError(str(exc).replace("import_from", "extend")) from None
        file = Path(parent.glob["__file__"]).resolve()
        child = cls(base_path, namespace, glob, **settings)
        setattr_ = object.__setattr__
        setattr_(child, "_globs", [*parent._globs, glob])
        setattr_(child, "func", parent.func)
        child._hooks.extend(parent._hooks)
        child.analyses.extend(parent.analyses)
        child._testing.extend(parent._testing)
        child._mixins.extend(parent._mixins)
        child.dependencies.extend([*parent.dependencies, str(file)])
        child.parameters.clear()
        child.parameters.update(child._collect_parameters())
        return child

    # -- parameters ------------------------------------------------------------------------------

    def _collect_parameters(self) -> dict[str, Any]:
        """Special defaults, then mixins' defaults, then each module's UPPERCASE globals, the
        most derived last (so it wins)."""
        params = dict(SPECIAL_DEFAULTS)
        for _level, mixin in self._mixins:
            for k, v in mixin.parameters.items():
                params.setdefault(k, v)
        for glob in self._globs:
            params.update({k: v for k, v in glob.items() if is_parameter(k)})
        return params

    def _parameter_meta(self) -> dict[str, dict[str, Any]]:
        meta: dict[str, dict[str, Any]] = {}
        for name, kind in special_types().items():
            meta[name] = {"name": name, "type": kind}
        sources = [m.glob for _, m in self._mixins] + list(self._globs)
        for glob in sources:
            for name, annotation in dict(glob.get("__annotations__", {})).items():
                if is_parameter(name):
                    meta.setdefault(name, {"name": name})["type"] = annotation_text(annotation)
            file = glob.get("__file__")
            if file and os.path.isfile(file):
                source = Path(file).read_text(encoding="utf-8", errors="replace")
                for name, text in comment_descriptions(source).items():
                    meta.setdefault(name, {"name": name})["description"] = text
        for name in self.parameters:
            meta.setdefault(name, {"name": name})
        return meta

    def _publish(self, name: str, value: Any) -> None:
        """A parameter's value in every module of the chain, so their functions read it as a
        global."""
        self.parameters[name] = value
        for glob in self._globs:
            glob[name] = value

    def __getattr__(self, name: str) -> Any:
        if is_parameter(name):
            try:
                return self.__dict__["parameters"][name]
            except KeyError:
                raise AttributeError(f"the experiment has no parameter {name}") from None
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if is_parameter(name):
            self._publish(name, value)
        else:
            object.__setattr__(self, name, value)

    def get_parameter(self, name: str) -> Any:
        return self.parameters[name]

    # -- data ------------------------------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        """``e["metrics/train/loss"] = 0.5``: nested data, created as needed."""
        parts = _data_key(key)
        node = self.data
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value

    def __getitem__(self, key: str) -> Any:
        node: Any = self.data
        for part in _data_key(key):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"no data at {key!r} (missing {part!r})")
            node = node[part]
        return node

    def __contains__(self, key: str) -> bool:
        return self.data_get(key, _MISSING) is not _MISSING

    def data_get(self, key: str, default: Any = None) -> Any:
        """The data at ``key``, or ``default`` when there is none."""
        try:
            return self[key]
        except KeyError:
            return default

    # -- logging ---------------------------------------------------------------------------------

    def log(self, message: Any, **_ignored: Any) -> None:
        """Write ``message`` to stdout and to the run's ``experiment_log.txt``."""
        text = str(message)
        print(text, flush=True)
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        lines = [f"{stamp} - {line}" for line in text.split("\n")]
        if self._log_file is None:
            self._pending_log.extend(lines)
        else:
            self._log_file.write("\n".join(lines) + "\n")
            self._log_file.flush()

    def log_lines(self, lines: Sequence[Any]) -> None:
        for line in lines:
            self.log(line)

    def log_parameters(self, parameters: Sequence[str] | None = None) -> None:
        """Log every parameter (or those named) as `` * NAME: value``."""
        names = list(self.parameters) if parameters is None else list(parameters)
        for name in names:
            if name in self.parameters:
                shown = repr(self.parameters[name])
                self.log(f" * {name}: {shown if len(shown) <= 200 else shown[:197] + '...'}")

    def log_pretty(self, value: Any) -> None:
        import pprint

        self.log(pprint.pformat(value))

    # -- tracking --------------------------------------------------------------------------------

    def track(self, name: str, value: Any) -> None:
        """Append ``value`` to the time series ``name`` (in the data and as a coralx metric);
        a matplotlib figure is saved in ``.track/`` and stored as a figure of the run."""
        series = self.data_get(name)
        if not isinstance(series, list):
            series = []
            self[name] = series
        step = len(series)
        tracked = self.metadata.setdefault("__track__", [])
        if name not in tracked:
            tracked.append(name)
        if hasattr(value, "savefig"):
            file = f"{TRACK_DIR}/{name.replace('/', '_')}_{step:03d}.png"
            self.commit_fig(file, value)
            series.append(file)
            if self._tracker is not None:
                self._tracker.log_figure(name, value, step=step)
            return
        number = float(value)
        series.append(number)
        if self._tracker is not None:
            self._tracker.log(name, number, step=step)

    def track_many(self, values: Mapping[str, Any]) -> None:
        for name, value in values.items():
            self.track(name, value)

    # -- files -----------------------------------------------------------------------------------

    def _file(self, name: str) -> Path:
        if self.path is None:
            raise PyComexError("the experiment has no folder yet: files are written while it runs")
        root = Path(self.path)
        target = (root / name).resolve()
        if not str(target).startswith(str(root.resolve()) + os.sep):
            raise PyComexError(f"{name!r} leaves the experiment folder; use a relative name")
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def open(self, file_name: str, mode: str = "r", *args: Any, **kwargs: Any) -> IO[Any]:
        """Open a file in the run's folder (recorded as an artifact when the run ends)."""
        return open(self._file(file_name), mode, *args, **kwargs)

    def commit_json(self, file_name: str, data: Any, **_ignored: Any) -> None:
        """Write ``data`` (numpy arrays and scalars allowed) as JSON in the run's folder."""
        text = json.dumps(to_json(data))
        _fs.atomic_write(self._file(file_name), text.encode("utf-8"))

    def commit_raw(self, file_name: str, content: str | bytes) -> None:
        """Write text (or bytes) as a file in the run's folder."""
        raw = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        _fs.atomic_write(self._file(file_name), raw)

    def commit_fig(self, file_name: str, fig: Any, **kwargs: Any) -> None:
        """Save a matplotlib figure in the run's folder."""
        fig.savefig(str(self._file(file_name)), **kwargs)

    # -- hooks -----------------------------------------------------------------------------------

    def _all_hooks(self) -> list[_Hook]:
        hooks = list(self._hooks)
        for i, (level, mixin) in enumerate(self._mixins):
            # A mixin ranks just below the module that included it (the first included lowest).
            rank = (level, 0, i)
            hooks.extend(
                _Hook(rank, h.seq, h.name, h.fn, h.replace, h.default) for h in mixin._hooks
            )
        return hooks

    @property
    def hook_map(self) -> dict[str, list[Callable[..., Any]]]:
        """The implementations each hook name resolves to (see ``hook`` for the rules)."""
        return _resolve(self._all_hooks())

    def apply_hook(self, name: str, default: Any = None, **kwargs: Any) -> Any:
        """Call the hook's implementations as ``fn(e, **kwargs)``; return the last one's value,
        or ``default`` when the hook has none."""
        result = default
        for fn in self.hook_map.get(name, []):
            result = fn(self, **kwargs)
        return result

    def _apply_testing_if_possible(self) -> None:
        if not self.is_running or self.is_testing or not self.parameters.get("__TESTING__"):
            return
        if not self._testing:
            return
        # The most derived module's testing function wins (the latest at that level).
        _level, fn = max(enumerate(self._testing), key=lambda t: (t[1][0], t[0]))[1]
        object.__setattr__(self, "is_testing", True)
        self.apply_hook("before_testing")
        fn(self)

    # -- running -----------------------------------------------------------------------------

    def is_main(self) -> bool:
        return self.glob.get("__name__") == "__main__"

    def run_if_main(self) -> None:
        """Run the experiment (with ``--NAME value`` overrides from ``sys.argv``) when this
        module is the script being run. A failed run ends the process with its exception."""
        if not self.is_main():
            return
        argv = sys.argv[1:]
        if any(a in ("-h", "--help") for a in argv):
            print(self._help())
            return
        try:
            overrides = parse_cli(argv, self.parameters, self._parameter_meta())
        except ParameterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(exc.exit_code) from None
        self.run(overrides)

    def _help(self) -> str:
        doc = (self.glob.get("__doc__") or "").strip()
        params = describe_parameters(self.parameters, self._parameter_meta())
        return f"{doc}\n\nparameters (--NAME VALUE):\n{params}".strip()

    def run(self, overrides: Mapping[str, Any] | None = None) -> Experiment:
        """Run the experiment now (``overrides``: parameter values over the module's). Raises
        the experiment's own exception after recording the run as FAILED."""
        if self.func is None:
            raise PyComexError("decorate the experiment's main function with @Experiment(...)")
        self._reset()
        self._prepare_parameters(overrides or {})
        self._initialize()
        try:
            object.__setattr__(self, "is_running", True)
            self._apply_testing_if_possible()
            self.apply_hook("before_run")
            self.func(self)
            self.apply_hook("after_run")
            for fn in self.analyses:
                fn(self)
        except BaseException as exc:
            object.__setattr__(self, "error", exc)
            object.__setattr__(self, "tb", traceback.format_exc())
        finally:
            object.__setattr__(self, "is_running", False)
            self._finalize()
        if self.error is not None:
            raise self.error
        return self

    def _reset(self) -> None:
        """A fresh start for each run of the same object (a script may run it several times)."""
        for name, value in (("data", {}), ("metadata", {}), ("error", None), ("tb", None)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "is_testing", False)
        object.__setattr__(self, "experiment_id", None)
        self.cache.events.clear()

    def _prepare_parameters(self, overrides: Mapping[str, Any]) -> None:
        include = {**self._collect_parameters(), **overrides}.get("__INCLUDE__")
        if include:
            self.include(include)
        params = {**self._collect_parameters(), **overrides}
        self.parameters.clear()
        for name, value in params.items():
            self._publish(name, value)
        object.__setattr__(self, "debug", bool(params.get("__DEBUG__")) or self.debug)
        self.cache.set_enabled(bool(params.get("__CACHING__", True)))

    # -- the run folder and record -----------------------------------------------------------

    @property
    def name(self) -> str:
        file = self.glob.get("__file__") or "experiment"
        return os.path.splitext(os.path.basename(file))[0]

    def _archive_root(self) -> Path:
        base = Path(self.base_path).resolve()
        if not base.is_dir():
            raise PyComexError(f"base_path {self.base_path} is not a folder")
        root = (base / self.namespace).resolve()
        if root != base and not str(root).startswith(str(base) + os.sep):
            raise PyComexError(f"namespace {self.namespace!r} leaves base_path {base}")
        return root

    def _prepare_path(self) -> Path:
        root = self._archive_root()
        root.mkdir(parents=True, exist_ok=True)
        if self.debug:
            path = root / "debug"
            if path.exists():  # PyComex reuses it; the earlier run's files stay in the store
                shutil.rmtree(path)
        else:
            now = datetime.datetime.now()
            while True:
                name = self.name_format.format(
                    date=now.strftime("%Y-%m-%d"),
                    time=now.strftime("%H-%M-%S"),
                    id=secrets.token_hex(3),
                )
                prefix = str(self.parameters.get("__PREFIX__") or "")
                path = root / (f"{prefix}__{name}" if prefix else name)
                if not path.exists():
                    break
        path.mkdir(parents=True)
        return path

    def _store(self) -> Repository:
        """The coralx store the run is recorded in: the nearest one at or above the experiment's
        folder (else the current folder); a new one in the experiment's folder if none."""
        if self._repo is None:
            from ._store import store_for

            object.__setattr__(self, "_repo", store_for(Path(self.base_path)))
        repo: Repository = self._repo
        return repo

    def _module_files(self) -> list[str]:
        files = [*self.dependencies]
        own = self.glob.get("__file__")
        if own:
            files.append(str(Path(own).resolve()))
        return list(dict.fromkeys(files))

    def _initialize(self) -> None:
        path = self._prepare_path()
        object.__setattr__(self, "path", str(path))
        object.__setattr__(self, "_log_file", open(path / LOG_FILE, "a", encoding="utf-8"))  # noqa: SIM115
        if self._pending_log:
            self._log_file.write("\n".join(self._pending_log) + "\n")
            self._pending_log.clear()
        code = path / CODE_DIR
        code.mkdir()
        for i, file in enumerate(self._module_files()):
            target = code / os.path.basename(file)
            if target.exists():
                target = code / f"{i}_{os.path.basename(file)}"
            shutil.copyfile(file, target)
        doc = self.glob.get("__doc__") or next(
            (g.get("__doc__") for g in reversed(self._globs) if g.get("__doc__")), ""
        )
        doc = doc or ""
        self.metadata.update(
            {
                "status": "running",
                "start_time": time.time(),
                "end_time": None,
                "duration": 0,
                "has_error": False,
                "base_path": self.base_path,
                "namespace": self.namespace,
                "name": self.name,
                "description": doc.lstrip(" \n"),
                "short_description": textwrap.shorten(doc.split("\n\n")[0], width=600),
                "parameters": self._parameter_meta(),
                "hooks": {k: {"name": k, "num": len(v)} for k, v in self.hook_map.items()},
                "dependencies": list(self.dependencies),
            }
        )
        self.metadata.setdefault("__track__", [])
        self._start_record(doc)
        self._save_metadata()
        self.log(f"experiment {self.name} ({self.namespace}) started: {self.path}")
        if self.experiment_id:
            self.log(f"coralx run {self.experiment_id}")

    def _start_record(self, doc: str) -> None:
        from ..experiments import ExperimentTracker

        repo = self._store()
        tracker = ExperimentTracker(repo)
        tags = ["pycomex"]
        if self.parameters.get("__TESTING__"):
            tags.append("testing")
        if self.debug:
            tags.append("debug")
        if self.parameters.get("__PREFIX__"):
            tags.append(f"prefix:{self.parameters['__PREFIX__']}")
        params = to_json(
            {k: v for k, v in self.parameters.items() if k != "__INCLUDE__" or v}, finite=True
        )
        exp = tracker.start(self.name, description=doc.strip() or None, params=params, tags=tags)
        object.__setattr__(self, "_tracker", tracker)
        object.__setattr__(self, "experiment_id", exp.experiment_id)
        self.metadata["coralx"] = {"experiment_id": exp.experiment_id, "store": str(repo.root)}

    def _save_metadata(self) -> None:
        assert self.path is not None
        text = json.dumps(to_json(self.metadata), indent=4, sort_keys=True)
        _fs.atomic_write(Path(self.path) / META_FILE, text.encode("utf-8"))

    def _finalize(self) -> None:
        assert self.path is not None
        error = self.error
        if error is not None:
            self.log(f"the experiment failed: {type(error).__name__}: {error}")
            self.log(self.tb or "")
        end = time.time()
        self.metadata["end_time"] = end
        self.metadata["duration"] = end - self.metadata["start_time"]
        self.metadata["has_error"] = error is not None
        self.metadata["status"] = "failed" if error is not None else "done"
        if error is not None:
            self.metadata["error"] = f"{type(error).__name__}: {error}"
            self.metadata["traceback"] = self.tb
        if self.cache.events:
            self.metadata["cache"] = [
                {"name": n, "scope": list(s), "event": ev} for n, s, ev in self.cache.events
            ]
        _fs.atomic_write(
            Path(self.path) / DATA_FILE, json.dumps(to_json(self.data)).encode("utf-8")
        )
        if self.parameters.get("__REPRODUCIBLE__"):
            self.log("recording the environment for reproducibility")
            env = json.dumps(to_json(_environment()), indent=2).encode("utf-8")
            _fs.atomic_write(Path(self.path) / DEPENDENCIES_FILE, env)
        self.log(
            f"experiment {self.name} {'failed' if error else 'done'} in "
            f"{self.metadata['duration']:.2f} s"
        )
        self._save_metadata()
        if self._log_file is not None:
            self._log_file.close()
            object.__setattr__(self, "_log_file", None)
        self._end_record(error)

    def _end_record(self, error: BaseException | None) -> None:
        tracker: ExperimentTracker | None = self._tracker
        if tracker is None:
            return
        assert self.path is not None
        try:
            for key, value in to_json(self.data, finite=True).items():
                tracker.set_data(key, value)
            tracker.set_data(
                "__pycomex__",
                {
                    "module": self._module_files()[-1],
                    "parents": list(self.dependencies),
                    "namespace": self.namespace,
                    "folder": self.path,
                    "descriptions": {
                        k: v["description"]
                        for k, v in self.metadata.get("parameters", {}).items()
                        if v.get("description")
                    },
                },
            )
            root = Path(self.path)
            for file in sorted(p for p in root.rglob("*") if p.is_file()):
                rel = file.relative_to(root).as_posix()
                kind = "code" if rel.startswith(CODE_DIR + "/") else "file"
                tracker.log_artifact(rel, file, media_type=_media_type(rel), kind=kind)
        except BaseException:
            if error is None:  # recording failed: the run failed, with that reason
                tracker.fail(f"recording the run failed: {traceback.format_exc(limit=1)}")
                raise
        if error is None:
            tracker.end()
        elif isinstance(error, KeyboardInterrupt):
            tracker.cancel()
        else:
            tracker.fail(f"{type(error).__name__}: {error}", error_detail=self.tb)
        object.__setattr__(self, "_tracker", None)

    def __repr__(self) -> str:
        return f"<pycomex Experiment {self.name!r} namespace={self.namespace!r}>"


def _data_key(key: str) -> list[str]:
    if not isinstance(key, str) or not key:
        raise InvalidValue(f"experiment data keys are strings like 'metrics/loss', not {key!r}")
    return key.split("/")


def _media_type(name: str) -> str:
    import mimetypes

    if name.endswith((".log", ".txt")):
        return "text/plain"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _environment() -> dict[str, Any]:
    """What ``__REPRODUCIBLE__`` records: the environment every coralx run records."""
    from ..environment import capture

    return dict(capture())
