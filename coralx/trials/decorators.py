"""``@setup``, ``@trial`` and ``@verify``: a file of trial functions becomes one coralx sweep.

Every combination of a trial's values is one configuration (one coralx run, in its own
subprocess), the trials run in ``order``, each as a stage of the sweep with its own workers
(``"__parallel__"``, else ``MLX_PARALLEL``), and the ``@verify`` functions are the sweep's
report. Running the file again reuses what completed (caching, lineage: as for every sweep).

>>> from coralx.trials import setup, trial, verify, VerificationResult
>>> @setup()
... def init():
...     return {"seed": 42}
>>> @trial(1, {"n": [3, 4]})
... def t(n: int):
...     return {"square": n * n, "seed": SETUP["seed"]}
>>> @verify(["t"])
... def check(results):
...     return all(r["success"] for r in results["t"])
"""

from __future__ import annotations

import ast
import enum
import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidConfig, InvalidValue
from ..sweeps.config import check_json

if TYPE_CHECKING:
    from ..sweeps.experiment import SweepExperiment
    from ..sweeps.results import Result, ResultSet
    from ..sweeps.runner import Stage

__all__ = ["TrialsFile", "VerificationResult", "setup", "trial", "trials_of", "verify"]

#: Where a module keeps its trials (and the sweep experiment made of them).
REGISTRY = "__coralx_trials__"
EXPERIMENT = "_coralx_trials_sweep_"
RESERVED = ("setup",)
PARALLEL = "__parallel__"


class VerificationResult(enum.StrEnum):
    """What a verification concludes."""

    SUPPORTS = "supports"
    REFUTES = "refutes"
    INCONCLUSIVE = "inconclusive"
    INVALID = "invalid"
    CONTINUE = "continue"

    @classmethod
    def of(cls, value: Any) -> VerificationResult:
        """A verification's return value as a result: the enum, one of its names (any case),
        a bool (True supports, False refutes) or None (inconclusive)."""
        if isinstance(value, cls):
            return value
        if value is None:
            return cls.INCONCLUSIVE
        if isinstance(value, bool):
            return cls.SUPPORTS if value else cls.REFUTES
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        if isinstance(value, enum.Enum) and isinstance(value.value, str):
            return cls.of(value.value)
        raise InvalidValue(
            f"a verification returned {value!r}; return a VerificationResult, one of "
            "'supports', 'refutes', 'inconclusive', 'invalid', 'continue', a bool, or None"
        )


@dataclass
class _Trial:
    name: str
    order: float
    seq: int
    fn: Callable[..., Any]
    values: dict[str, list[Any]]
    parallel: int | None


@dataclass
class _Verify:
    seq: int
    fn: Callable[..., Any]
    trials: list[str] | None


@dataclass
class TrialsFile:
    """The trials, setups and verifications of one module, and the sweep they make."""

    glob: dict[str, Any]
    trials: dict[str, _Trial] = field(default_factory=dict)
    verifiers: list[_Verify] = field(default_factory=list)
    setup_context: dict[str, Any] = field(default_factory=dict)
    #: Stream every combination's output (``--stream-all`` / ``MLX_STREAM_ALL=1``).
    stream_all: bool = False
    #: The verdict of each verification of the last run (name -> value), and their errors.
    verdicts: dict[str, str] = field(default_factory=dict)
    verify_errors: dict[str, str] = field(default_factory=dict)
    experiment: SweepExperiment = field(init=False)

    def __post_init__(self) -> None:
        from ..sweeps.experiment import SweepExperiment

        file = self.glob.get("__file__") or "trials"
        exp = SweepExperiment(
            self.run_combination,
            name=Path(file).stem,
            description=self.glob.get("__doc__"),
            tags=["trials"],
        )
        # The sweep's function is found in the module under this name, by every child.
        exp.__module__ = self.glob.get("__name__", "__main__")
        exp.__qualname__ = EXPERIMENT  # type: ignore[attr-defined]
        exp.configs(self.configs)
        exp.report(self.report)
        exp.stages = self.stages
        self.experiment = exp

    # -- the sweep ------------------------------------------------------------------------------

    def ordered(self) -> list[_Trial]:
        return sorted(self.trials.values(), key=lambda t: (t.order, t.seq))

    def combinations(self, spec: _Trial) -> list[dict[str, Any]]:
        """The cartesian product of a trial's values, one dict of arguments each."""
        keys = list(spec.values)
        return [
            dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*spec.values.values())
        ]

    def configs(self) -> list[dict[str, Any]]:
        out = []
        for spec in self.ordered():
            seen: set[str] = set()
            for args in self.combinations(spec):
                inner = ", ".join(f"{k}={v!r}" for k, v in args.items())
                name = f"{spec.name}({inner})"
                while name in seen:  # the same values listed twice: one name each
                    name += "'"
                seen.add(name)
                out.append({"name": name, "trial": spec.name, "values": args})
        return out

    def workers(self, spec: _Trial) -> int:
        if spec.parallel is not None:
            return spec.parallel
        env = os.environ.get("MLX_PARALLEL", "").strip()
        if env:
            try:
                return max(1, int(env))
            except ValueError:
                raise InvalidValue(f"MLX_PARALLEL={env!r} is not a number of workers") from None
        return 1

    def stages(self, configs: Sequence[Mapping[str, Any]]) -> list[Stage]:
        """One stage per trial, in order: its workers, streaming for a single combination
        (or every one with --stream-all) when sequential, context updates after the batch
        when parallel."""
        from ..sweeps.runner import Stage

        out = []
        for spec in self.ordered():
            names = [c["name"] for c in configs if c["trial"] == spec.name]
            workers = self.workers(spec)
            stream = workers == 1 and (len(names) == 1 or self.stream_all)
            out.append(Stage(names, workers=workers, stream=stream, defer_context=workers > 1))
        return out

    def run_combination(self, config: Mapping[str, Any], run: Any) -> dict[str, Any]:
        """Run one combination (in its subprocess): SETUP set, the trial called with its
        values; a returned ``context_update`` is merged into the context by the runner."""
        spec = self.trials.get(config["trial"])
        if spec is None:
            raise InvalidConfig(f"this file has no trial {config['trial']!r}")
        spec.fn.__globals__["SETUP"] = dict(run.setup)
        value = spec.fn(**config["values"])
        out: dict[str, Any] = {"result": value}
        if isinstance(value, Mapping) and isinstance(value.get("context_update"), Mapping):
            out["context_update"] = dict(value["context_update"])
        return out

    # -- verification ---------------------------------------------------------------------------

    def run_dicts(self, results: ResultSet) -> dict[str, list[dict[str, Any]]]:
        """Trial name -> its run dicts, in combination order."""
        out: dict[str, list[dict[str, Any]]] = {spec.name: [] for spec in self.ordered()}
        for r in results:
            out.setdefault(r.config["trial"], []).append(run_dict(r))
        return out

    def final_context(self, runs: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
        context = dict(self.setup_context)
        for spec in self.ordered():
            for r in runs.get(spec.name, []):
                value = r.get("result")
                if r["success"] and isinstance(value, Mapping):
                    update = value.get("context_update")
                    if isinstance(update, Mapping):
                        context.update(update)
        return context

    def report(self, results: ResultSet) -> str | None:
        """Every @verify function, given the run dicts; the sweep's verdict combines theirs
        (refutes, then invalid, then inconclusive or continue, else supports)."""
        if not self.verifiers:
            return None
        runs = self.run_dicts(results)
        self.glob["SETUP"] = self.final_context(runs)
        self.verdicts.clear()
        self.verify_errors.clear()
        for v in sorted(self.verifiers, key=lambda v: v.seq):
            given = runs if v.trials is None else {n: runs.get(n, []) for n in v.trials}
            try:
                verdict = VerificationResult.of(v.fn(given))
            except Exception as exc:  # one broken verification does not lose the others
                import traceback

                self.verify_errors[v.fn.__name__] = traceback.format_exc()
                verdict = VerificationResult.INVALID
                del exc
            self.verdicts[v.fn.__name__] = verdict.value
        return combine(list(self.verdicts.values()))


def combine(verdicts: Sequence[str]) -> str:
    for worst in ("refutes", "invalid", "inconclusive", "continue"):
        if worst in verdicts:
            return worst
    return "supports"


def run_dict(r: Result) -> dict[str, Any]:
    """The seed's run dict: ``{"success": True, "result": ...}`` or ``{"success": False,
    "return_code": int, "error": str, "type": str}``."""
    if r.status == "completed":
        return {"success": True, "result": (r.result or {}).get("result")}
    error = r.error or {}
    code = error.get("returncode")
    return {
        "success": False,
        "return_code": code if isinstance(code, int) else 1,
        "error": str(error.get("message") or r.status),
        "type": str(error.get("type") or r.status),
    }


# -- the decorators ----------------------------------------------------------------------------


def trials_of(glob: dict[str, Any]) -> TrialsFile:
    """The trials of the module whose globals are ``glob`` (made on first use)."""
    found = glob.get(REGISTRY)
    if isinstance(found, TrialsFile):
        return found
    registry = TrialsFile(glob)
    glob[REGISTRY] = registry
    glob[EXPERIMENT] = registry.experiment
    if glob.get("__name__") == "__main__":
        from .main import run_at_exit

        run_at_exit(registry)
    return registry


def setup(order: int | None = None) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Register a function run once before any trial, returning a JSON dict. The dicts of
    every setup function are merged (by ``order``, then file order; later keys win) into the
    context every trial and verification sees as the global ``SETUP``; its ``seed``,
    ``numpy_seed``, ``torch_seed`` and ``pythonhashseed`` seed every combination."""

    def register(fn: Callable[[], Any]) -> Callable[[], Any]:
        registry = trials_of(fn.__globals__)

        def checked() -> dict[str, Any] | None:
            value = fn()
            if value is None:
                return None
            if not isinstance(value, Mapping):
                raise InvalidConfig(
                    f"@setup function {fn.__name__} returned a {type(value).__name__}; "
                    "return a dict of JSON values"
                )
            for key, item in value.items():
                check_json(item, f"SETUP[{key!r}] (from @setup function {fn.__name__})")
            registry.setup_context.update(value)
            return dict(value)

        checked.__name__ = fn.__name__
        registry.experiment.setup(checked, order=order)
        return fn

    return register


def _check_literal(fn_name: str, key: str, index: int, value: Any) -> None:
    where = f"@trial {fn_name}: values[{key!r}][{index}]"
    try:
        ok = ast.literal_eval(repr(value)) == value
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        ok = False
    if not ok:
        raise InvalidConfig(
            f"{where} is {value!r:.60}, not a literal; trial values are literals (numbers, "
            "strings, bools, None, lists and dicts of them, as ast.literal_eval reads them): "
            "build objects inside the trial, and pass coupled parameters as one dict"
        )
    check_json(value, where)


def trial(
    order: int, values: Mapping[str, Sequence[Any]] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run the function once per combination of ``values`` (a dict of lists: their cartesian
    product), each in its own subprocess, after the trials of lower ``order``.
    ``"__parallel__": N`` runs N combinations at once; ``"setup"`` is reserved."""
    given = dict(values or {})

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        import inspect

        name = fn.__name__
        for key in given:
            if key in RESERVED:
                raise InvalidConfig(
                    f"@trial {name}: {key!r} is reserved and cannot be a parameter name "
                    "(the setup context is the global SETUP)"
                )
        parallel = given.pop(PARALLEL, None)
        if parallel is not None and (
            not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1
        ):
            raise InvalidConfig(
                f"@trial {name}: {PARALLEL} is a number of workers, not {parallel!r}"
            )
        grid: dict[str, list[Any]] = {}
        for key, items in given.items():
            if not isinstance(key, str):
                raise InvalidConfig(f"@trial {name}: parameter names are strings, not {key!r}")
            if not isinstance(items, list | tuple):
                raise InvalidConfig(
                    f"@trial {name}: values[{key!r}] is {items!r:.60}; give a list of values"
                )
            for i, item in enumerate(items):
                _check_literal(name, key, i, item)
            grid[key] = list(items)
        params = inspect.signature(fn).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        unknown = [k for k in grid if k not in params and not takes_any]
        if unknown:
            raise InvalidConfig(f"@trial {name}: {name}() takes no parameter {unknown[0]!r}")
        registry = trials_of(fn.__globals__)
        if name in registry.trials:
            raise InvalidConfig(f"two trials are named {name!r}; give each function its own name")
        registry.trials[name] = _Trial(name, float(order), len(registry.trials), fn, grid, parallel)
        return fn

    return register


def verify(
    trial_names: Sequence[str] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run the function after the trials with ``{trial name: [run dict, ...]}`` for the trials
    named (all when None); it returns a VerificationResult, a string, a bool or None."""
    names = None if trial_names is None else [str(n) for n in trial_names]
    if isinstance(trial_names, str):
        names = [trial_names]

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        registry = trials_of(fn.__globals__)
        registry.verifiers.append(_Verify(len(registry.verifiers), fn, names))
        return fn

    return register
