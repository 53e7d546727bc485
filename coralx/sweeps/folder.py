"""An experiment defined by a folder of configs, as the Experiment Manager defines it.

```
configs/
  experiment.yaml   name, id, desc, settings
  base.yaml         settings shared by every trial (optional)
  trials.yaml       a list of trials: name, id, repeat, settings
```

Each trial's settings are ``base``'s, then the experiment's, then the trial's own, merged
deeply in that order; each of its ``repeat`` repeats is one configuration (one coralx run) with
its own seed. ``coralx sweep run configs/ --entry mymodule:train`` runs the folder with
``train(config)`` or ``train(config, run)``, as any sweep: completed repeats are skipped when it
runs again, and failed ones rerun as children of the failed run.

>>> spec = load_folder("configs")
>>> spec.name, len(spec.configs), spec.configs[0]["name"]
('my_experiment', 6, 'small_network_r0')
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidConfig
from .config import Config, ConfigList, merge, repeat

if TYPE_CHECKING:
    from .experiment import SweepExperiment
    from .runner import SweepResult

__all__ = ["FolderSpec", "TrialSpec", "experiment_of_folder", "is_config_folder", "load_folder"]

EXPERIMENT_FILE = "experiment.yaml"
BASE_FILE = "base.yaml"
TRIALS_FILE = "trials.yaml"
#: Keys each configuration gets besides its settings: which trial it belongs to.
TRIAL_KEYS = ("trial_id", "trial_name")


@dataclass
class TrialSpec:
    name: str
    id: Any
    repeat: int
    settings: dict[str, Any]


@dataclass
class FolderSpec:
    """An experiment folder, read and checked."""

    path: Path
    name: str
    id: Any
    desc: str | None
    settings: dict[str, Any]
    base: dict[str, Any]
    trials: list[TrialSpec] = field(default_factory=list)

    @property
    def configs(self) -> ConfigList:
        """One configuration per repeat of each trial, in order, each with its own seed."""
        out: list[Config] = []
        shared = merge(self.base, self.settings)
        for trial in self.trials:
            settings = merge(shared, trial.settings)
            bad = [k for k in (*TRIAL_KEYS, "name", "repeat") if k in settings]
            if bad:
                raise InvalidConfig(
                    f"{self.path / TRIALS_FILE}: trial {trial.name!r} sets {', '.join(bad)}, "
                    "which the experiment manager sets itself; rename the setting"
                )
            config = {
                **settings,
                "name": trial.name,
                "trial_id": trial.id,
                "trial_name": trial.name,
            }
            out.extend(repeat([config], trial.repeat))
        return ConfigList(out)


def is_config_folder(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / EXPERIMENT_FILE).is_file()


def load_folder(path: str | os.PathLike[str]) -> FolderSpec:
    """Read and check an experiment folder; errors name the file and the field."""
    from .config import _parse

    folder = Path(path)
    if not folder.is_dir():
        raise InvalidConfig(f"{folder} is not a folder of experiment configs")
    exp_path = folder / EXPERIMENT_FILE
    if not exp_path.is_file():
        raise InvalidConfig(
            f"{folder} has no {EXPERIMENT_FILE} (it holds name, id, desc, settings)"
        )
    exp = _parse(exp_path)
    name = _required(exp, "name", exp_path, "the experiment")
    if not isinstance(name, str) or not name.strip():
        raise InvalidConfig(f"{exp_path}: 'name' must be a non-empty string")
    ident = _required(exp, "id", exp_path, "the experiment")
    desc = exp.get("desc")
    settings = _settings(exp, exp_path, "the experiment")
    base: dict[str, Any] = {}
    base_path = folder / BASE_FILE
    if base_path.is_file():
        base = _settings(_parse(base_path), base_path, "the base")
    trials_path = folder / TRIALS_FILE
    if not trials_path.is_file():
        raise InvalidConfig(f"{folder} has no {TRIALS_FILE} (a list of trials)")
    return FolderSpec(
        path=folder,
        name=name,
        id=ident,
        desc=str(desc) if desc is not None else None,
        settings=settings,
        base=base,
        trials=_trials(trials_path),
    )


def _required(data: Mapping[str, Any], key: str, path: Path, what: str) -> Any:
    if data.get(key) is None:
        raise InvalidConfig(f"{path}: {what} has no '{key}'; add `{key}: ...`")
    return data[key]


def _settings(data: Mapping[str, Any], path: Path, what: str) -> dict[str, Any]:
    settings = data.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise InvalidConfig(f"{path}: {what}'s 'settings' must be a mapping")
    return dict(settings)


def _trials(path: Path) -> list[TrialSpec]:
    import yaml

    from .config import _read_config_text

    try:
        data = yaml.safe_load(_read_config_text(path))
    except yaml.YAMLError as exc:
        raise InvalidConfig(f"{path} is not valid YAML: {exc}") from None
    if isinstance(data, Mapping) and "trials" in data:
        data = data["trials"]
    if not isinstance(data, list) or not data:
        raise InvalidConfig(f"{path} must hold a list of trials (name, id, repeat, settings)")
    trials: list[TrialSpec] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(data, 1):
        what = f"trial {i}"
        if not isinstance(item, Mapping):
            raise InvalidConfig(f"{path}: {what} must be a mapping, not {type(item).__name__}")
        name = _required(item, "name", path, what)
        ident = _required(item, "id", path, what)
        if not isinstance(name, str) or not name.strip() or "/" in name:
            raise InvalidConfig(f"{path}: {what}'s 'name' must be a plain name, not {name!r}")
        if name in seen:
            raise InvalidConfig(f"{path}: trials {seen[name]} and {i} are both named {name!r}")
        seen[name] = i
        count = item.get("repeat", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidConfig(f"{path}: {what}'s 'repeat' must be a positive integer")
        trials.append(TrialSpec(name, ident, count, _settings(item, path, what)))
    return trials


def experiment_of_folder(
    path: str | os.PathLike[str],
    entry: Callable[..., Any] | str,
    *,
    callbacks: Sequence[Any] = (),
    executor: Any = None,
    spec: FolderSpec | None = None,
) -> SweepExperiment:
    """The sweep experiment that runs ``entry`` once per repeat of every trial of the folder."""
    from .experiment import SweepExperiment

    spec = spec or load_folder(path)
    fn = resolve_entry(entry) if isinstance(entry, str) else entry
    fn = getattr(fn, "fn", fn)  # an @coralx.experiment object: its function
    settings: dict[str, Any] = {"callbacks": list(callbacks)}
    if executor is not None:
        settings["executor"] = executor
    experiment = SweepExperiment(
        fn, name=spec.name, description=spec.desc, tags=["experiment-manager"], **settings
    )
    configs = spec.configs
    experiment.configs(lambda: configs)
    return experiment


def run_folder(
    path: str | os.PathLike[str],
    entry: Callable[..., Any] | str,
    argv: Sequence[str] | None = (),
    **options: Any,
) -> SweepResult:
    """Run an experiment folder (as ``coralx sweep run FOLDER --entry MOD:FN ARGS...``)."""
    return experiment_of_folder(path, entry).run(argv, **options)


def resolve_entry(entry: str) -> Callable[..., Any]:
    """``"package.module:function"`` (or ``path/to/file.py:function``) -> the function."""
    import importlib
    import sys

    module_name, sep, attr = entry.partition(":")
    if not sep or not module_name or not attr:
        raise InvalidConfig(f"--entry takes MODULE:FUNCTION (e.g. mymodule:train), not {entry!r}")
    if module_name.endswith(".py"):
        from .task import load_script

        module = load_script(module_name)
    else:
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise InvalidConfig(f"cannot import {module_name!r} for --entry: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InvalidConfig(f"{module_name} has no {attr!r} (from --entry {entry})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InvalidConfig(f"--entry {entry} is not a function")
    return obj
