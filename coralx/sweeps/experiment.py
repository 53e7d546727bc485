"""``@coralx.experiment``: a function that runs once per configuration of a sweep.

>>> import coralx
>>> @coralx.experiment(name="mnist", tags=["mnist"], metric="val_loss", mode="min")
... def train(config: coralx.Config, run: coralx.Run) -> dict:
...     ...
...     return {"accuracy": acc}
>>> @train.configs
... def configs():
...     return coralx.sweep([{"name": "base", "lr": 0.1}],
...                         [{"name": "w64", "model.width": 64},
...                          {"name": "w128", "model.width": 128}])
>>> @train.report
... def report(results):
...     return "supports" if results.best("val_loss").config.model.width == 128 else "refutes"
>>> if __name__ == "__main__":
...     train.run()          # parses --set, --executor, --workers, --rerun, ... from sys.argv
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ..errors import InvalidConfig, InvalidValue
from .config import (
    ConfigList,
    as_config_list,
    check_json,
    check_not_swept,
    config_hash,
    merge,
    parse_axes,
    replace_axis,
    validate_configs,
)
from .seeding import DEFAULT_BASE_SEED, config_seed

# Not `from typing import ...`: importing typing is a measurable part of a child's start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .callbacks import Callback
    from .executors import Executor
    from .results import ResultSet
    from .runner import SweepResult
    from .verdict import Verdict

__all__ = ["SweepExperiment", "experiment"]


def wraps(wrapper: Any, fn: Callable[..., Any]) -> None:
    """What ``functools.update_wrapper`` copies (without importing functools in every child):
    the wrapper is found, named and pickled as the function it stands for."""
    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(wrapper, attr, getattr(fn, attr, None))
    wrapper.__wrapped__ = fn


class SweepExperiment:
    """The object ``@coralx.experiment`` makes of a function. Calling it calls the function;
    ``.run()`` runs the sweep."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        tags: Sequence[str] = (),
        executor: str | Executor = "subprocess",
        workers: int = 1,
        metric: str | None = None,
        mode: str = "min",
        defaults: Mapping[str, Any] | None = None,
        seed: int | None = None,
        callbacks: Sequence[Callback] = (),
        repo: Any = None,
    ) -> None:
        wraps(self, fn)
        self.fn = fn
        self.name = name or fn.__name__
        self.description = description if description is not None else (fn.__doc__ or None)
        self.tags = list(tags)
        self.executor = executor
        self.workers = workers
        if mode not in ("min", "max"):
            raise InvalidValue(f"mode must be 'min' or 'max', not {mode!r}")
        self.metric = metric
        self.mode = mode
        self.defaults = dict(defaults or {})
        check_json(self.defaults, "defaults")
        self.seed = seed
        self.callbacks = list(callbacks)
        self.repo = repo
        self.hooks: dict[str, list[Callable[..., Any]]] = {}
        self._configs_fn: Callable[[], Any] | None = None
        self._report_fn: Callable[[ResultSet], Any] | None = None
        self._testing_fn: Callable[..., Any] | None = None
        self._setup_fns: list[tuple[float, int, Callable[[], Any]]] = []
        #: ``stages(configs) -> [Stage, ...]``: run the sweep in stages (see ``runner.Stage``).
        self.stages: Callable[[ConfigList], Any] | None = None

    # -- registration ----------------------------------------------------------------------------

    def configs(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        """Register the function returning the sweep's configurations (a list of dicts or a
        ``coralx.sweep(...)`` result)."""
        self._configs_fn = fn
        return fn

    def report(self, fn: Callable[[ResultSet], Any]) -> Callable[[ResultSet], Any]:
        """Register the function that receives the :class:`ResultSet` and may return a verdict."""
        self._report_fn = fn
        return fn

    def testing(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Register the function that shrinks a config for ``--testing``: it changes the config
        it is given (``config.epochs = 2``) or returns a dict of updates."""
        self._testing_fn = fn
        return fn

    def setup(self, fn: Callable[[], Any] | None = None, *, order: int | None = None) -> Any:
        """Register a function run once before the sweep, returning a JSON dict: the setup
        context every run sees as ``run.setup``; its seed keys seed every configuration."""

        def register(f: Callable[[], Any]) -> Callable[[], Any]:
            rank = float(order) if order is not None else float("inf")
            self._setup_fns.append((rank, len(self._setup_fns), f))
            return f

        return register(fn) if fn is not None else register

    def hook(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register ``fn(run, **kwargs)`` under ``name``; the run calls
        ``run.apply_hook(name, ...)``. ``before_run`` and ``after_run`` are called for you."""

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.hooks.setdefault(name, []).append(fn)
            return fn

        return register

    def derive(self, name: str, **changes: Any) -> SweepExperiment:
        """A variant of this experiment: same function, configs, hooks and report, with some
        settings changed (``defaults`` are merged into this one's)."""
        child = SweepExperiment.__new__(SweepExperiment)
        child.__dict__.update(self.__dict__)
        child.hooks = {k: list(v) for k, v in self.hooks.items()}
        child._setup_fns = list(self._setup_fns)  # its own list: setup() on it adds to it alone
        child.name = name
        if "defaults" in changes:
            child.defaults = dict(merge(self.defaults, changes.pop("defaults")).to_dict())
        for key, value in changes.items():
            if not hasattr(child, key) or key.startswith("_"):
                raise InvalidValue(f"derive() cannot change {key!r}")
            setattr(child, key, value)
        return child

    # -- running ---------------------------------------------------------------------------------

    def __call__(self, config: Mapping[str, Any], run: Any = None) -> Any:
        from .config import Config

        return self.fn(Config(config), run) if run is not None else self.fn(Config(config))

    def build_configs(
        self,
        *,
        testing: bool = False,
        overrides: Mapping[str, Any] | None = None,
        axis_overrides: Mapping[str, Any] | None = None,
        seeds: bool = True,
    ) -> ConfigList:
        """The sweep's configurations: the configs (with ``--set-axis`` axes replaced), under
        the defaults, then ``--set`` overrides (which must not touch a key the sweep varies),
        then the testing function; names checked unique, values checked JSON, and (unless
        ``seeds=False``) a ``seed`` drawn for every configuration without one
        (:meth:`draw_seeds`, :func:`coralx.sweeps.seeding.config_seed`).
        """
        raw = self._configs_fn() if self._configs_fn else [{"name": self.name}]
        configs = as_config_list(raw)
        axes = parse_axes(axis_overrides or {})
        for key, values in axes.items():
            configs = replace_axis(configs, key, values)
        if self.defaults:
            configs = ConfigList([merge(self.defaults, c) for c in configs], shape=configs.shape)
        if overrides:
            check_not_swept(configs, overrides)
        out = []
        for config in configs:
            if overrides:
                config = merge(config, overrides)
            if testing and self._testing_fn is not None:
                changed = self._testing_fn(config)
                if isinstance(changed, Mapping):
                    config = merge(config, changed)
            out.append(config)
        configs = validate_configs(ConfigList(out, shape=configs.shape))
        if seeds:
            self.draw_seeds(configs)
        return configs

    def draw_seeds(self, configs: ConfigList, context: Mapping[str, Any] | None = None) -> None:
        """Give every configuration without a ``seed`` one drawn from :attr:`base_seed` and its
        hash, unless the setup context sets ``seed`` (which then stands for theirs)."""
        if context is not None and isinstance(context.get("seed"), int):
            return
        base = self.base_seed
        for config in configs:
            if "seed" not in config:
                config["seed"] = config_seed(base, config_hash(config))

    @property
    def base_seed(self) -> int:
        """The seed configurations without their own are drawn from (recorded with the sweep)."""
        return self.seed if self.seed is not None else DEFAULT_BASE_SEED

    def run_setup(self) -> dict[str, Any]:
        context: dict[str, Any] = {}
        for _rank, _i, fn in sorted(self._setup_fns, key=lambda t: (t[0], t[1])):
            value = fn()
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise InvalidConfig(f"setup function {fn.__name__} must return a dict")
            context.update(value)
        check_json(context, "the setup context")
        return context

    def run_report(self, results: ResultSet) -> Verdict | None:
        if self._report_fn is None:
            return None
        from .verdict import to_verdict

        return to_verdict(self._report_fn(results))

    def run_sweep(self, **options: Any) -> SweepResult:
        """Run the sweep from Python, printing nothing (see :func:`coralx.sweeps.run_sweep`)."""
        from .runner import run_sweep

        return run_sweep(self, **options)

    def run(self, argv: Sequence[str] | None = None, **options: Any) -> SweepResult:
        """Run the sweep as a script does: options from the command line (``argv``, default
        ``sys.argv[1:]``) over ``options`` over the decorator's; a progress bar, a summary."""
        from ._child import refuse_sweep_during_import
        from ._cli import main

        refuse_sweep_during_import()  # before its arguments are parsed: they are the worker's
        return main(self, argv, options)

    def __repr__(self) -> str:
        return f"<coralx experiment {self.name!r}>"


def experiment(fn: Callable[..., Any] | None = None, **settings: Any) -> Any:
    """Make ``fn(config, run)`` (or ``fn(config)``) an experiment run once per configuration.

    Settings: ``name``, ``description``, ``tags``, ``executor`` (``"subprocess"``, ``"fork"``,
    ``"inline"``, ``"ray"``, ``"ray://host:port"`` or an Executor), ``workers``, ``metric`` and
    ``mode`` (the main metric, shown by ``coralx sweep show``), ``defaults`` (a base config),
    ``seed``, ``callbacks``, ``repo`` (the store's folder; default: found from the cwd).
    Works bare (``@coralx.experiment``) or with settings (``@coralx.experiment(name=...)``).
    """
    if fn is not None:
        return SweepExperiment(fn, **settings)
    return lambda f: SweepExperiment(f, **settings)
