"""The error hierarchy of coralx.

Every error coralx raises on purpose derives from :class:`CoralxError`. Subclasses also derive
from the built-in exception a caller would naturally catch (``KeyError`` for a missing thing,
``ValueError`` for bad input), so ``except KeyError`` keeps working for code that does not know
coralx. Messages say what went wrong and what to do next; the CLI prints them as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "EXIT_ENVIRONMENT",
    "EXIT_INTERRUPTED",
    "EXIT_SWEEP_FAILED",
    "AmbiguousRevision",
    "ArtifactNotFound",
    "ChecksumMismatch",
    "ChunkNotFound",
    "ConcurrentUpdate",
    "CoralxError",
    "ExperimentAlreadyRunning",
    "ExperimentNotActive",
    "ExperimentNotFound",
    "ImportSourceError",
    "IncompatibleWeights",
    "InvalidConfig",
    "InvalidName",
    "InvalidValue",
    "InvalidWeightsFile",
    "LockTimeout",
    "MissingDependency",
    "MissingMainGuard",
    "NoActiveExperiment",
    "NotACoralxStore",
    "NotFound",
    "OutputInsideStore",
    "PushRejected",
    "RecordDamaged",
    "RemoteCorrupted",
    "RemoteError",
    "RemoteNotFound",
    "RepositoryNotFound",
    "RevisionNotFound",
    "StoreCorrupted",
    "SweepBusy",
    "SweepNotFound",
    "TensorNotFound",
    "UnsupportedFormat",
]


# Exit statuses beside each error's own ``exit_code`` (the table is in docs/cli.md).
EXIT_ENVIRONMENT = 6  # the machine said no: a full disk, a missing folder, a permission
EXIT_SWEEP_FAILED = 7  # a sweep ran, and at least one of its configurations failed
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class CoralxError(Exception):
    """Root of every error coralx raises on purpose.

    ``exit_code`` is what the CLI exits with when this error reaches it.
    """

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        # KeyError's own __str__ would show the message in quotes.
        return self.message


class NotFound(CoralxError, KeyError):
    """Something asked for by name or id does not exist."""

    exit_code = 4


class RepositoryNotFound(NotFound, FileNotFoundError):
    """No ``.coralx`` store at or above a folder."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"no coralx store found at or above {path}; "
            "run `coralx init` in your project folder to create one"
        )
        self.path = path


class NotACoralxStore(CoralxError):
    """A ``.coralx`` path exists but is not a coralx store; coralx leaves it untouched."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(
            f"{path} exists but is not a coralx store ({reason}); "
            "move it away or pick another folder, coralx will not change it"
        )
        self.path = path
        self.reason = reason


class UnsupportedFormat(CoralxError):
    """The store was written by a newer coralx than this one."""

    def __init__(self, path: str, found: int, supported: int) -> None:
        super().__init__(
            f"the store at {path} has format version {found}, but this coralx reads up to "
            f"version {supported}; upgrade coralx (pip install -U coralx) to open it"
        )
        self.path = path
        self.found = found
        self.supported = supported


class InvalidName(CoralxError, ValueError):
    """A name (tensor, branch, tag, metric, experiment) that coralx cannot accept."""

    exit_code = 2

    def __init__(self, kind: str, name: object, reason: str) -> None:
        super().__init__(f"invalid {kind} {name!r}: {reason}")
        self.kind = kind
        self.name = name
        self.reason = reason


class InvalidValue(CoralxError, ValueError):
    """A value coralx cannot store (not an array, not JSON, an object dtype, ...)."""

    exit_code = 2


class RevisionNotFound(NotFound):
    """A revision (commit id, branch, tag, ``HEAD~n``, experiment id) that resolves to nothing."""

    def __init__(self, rev: str, hint: str = "") -> None:
        message = f"unknown revision {rev!r}"
        message += f"; {hint}" if hint else "; see `coralx log` and `coralx branch` for what exists"
        super().__init__(message)
        self.rev = rev


class AmbiguousRevision(CoralxError, ValueError):
    """A short id that matches more than one object."""

    exit_code = 2

    def __init__(self, rev: str, candidates: Sequence[str], kind: str = "revision") -> None:
        shown = ", ".join(sorted(candidates)[:10])
        more = f" and {len(candidates) - 10} more" if len(candidates) > 10 else ""
        super().__init__(
            f"{kind} {rev!r} is ambiguous: it matches {shown}{more}; type more characters"
        )
        self.rev = rev
        self.candidates = list(candidates)


class ExperimentNotFound(NotFound):
    """No experiment with this id or id prefix. The CLI exits 1 for it, as the seed's CLI
    does for an unknown id (other things not found exit 4)."""

    exit_code = 1

    def __init__(self, experiment_id: str) -> None:
        super().__init__(
            f"no experiment {experiment_id!r}; `coralx exp list` shows the experiments there are"
        )
        self.experiment_id = experiment_id


class SweepNotFound(NotFound):
    """No sweep with this id or id prefix."""

    def __init__(self, sweep_id: str) -> None:
        super().__init__(f"no sweep {sweep_id!r}; `coralx sweep list` shows the sweeps there are")
        self.sweep_id = sweep_id


class TensorNotFound(NotFound):
    """No tensor by this name in a weight commit."""

    def __init__(
        self, name: str, commit: str, close: list[str] | None = None, pattern: bool = False
    ) -> None:
        what = f"no tensor matches {name!r}" if pattern else f"no tensor {name!r}"
        hint = f"; close names: {', '.join(close)}" if close else ""
        super().__init__(
            f"{what} in commit {commit[:12]}{hint}; `coralx show {commit[:12]}` lists its tensors"
        )
        self.name = name
        self.commit = commit
        self.close = list(close or [])


class ArtifactNotFound(NotFound):
    """No artifact, figure or text under this name."""


class ExperimentNotActive(CoralxError, RuntimeError):
    """Logging to, or ending, a run that is not running (never started, or already ended)."""

    exit_code = 2


class ChecksumMismatch(CoralxError):
    """Stored content does not hash to its address: the store is damaged."""

    exit_code = 3

    def __init__(self, expected: str, got: str, what: str = "") -> None:
        where = f" ({what})" if what else ""
        super().__init__(
            f"checksum mismatch{where}: expected {expected}, got {got}; the stored data is "
            "damaged. Run `coralx fsck` to list everything affected"
        )
        self.expected = expected
        self.got = got
        self.what = what


class StoreCorrupted(CoralxError):
    """A stored object is missing or unreadable."""

    exit_code = 3


class RecordDamaged(StoreCorrupted):
    """An experiment record file exists but cannot be read, or does not match its digest."""

    def __init__(self, path: str, reason: str, experiment_id: str | None = None) -> None:
        run = f"run {experiment_id}" if experiment_id else "a run"
        super().__init__(
            f"the record of {run} is damaged: {path} {reason}. Recover it from the index copy "
            "with `coralx fsck --repair` (its metrics are rebuilt from the run's journal), or "
            "restore the file from a remote (`coralx pull`) or a backup"
        )
        self.path = path
        self.reason = reason
        self.experiment_id = experiment_id


class ChunkNotFound(StoreCorrupted, KeyError):
    """A chunk that a manifest or a delta names is not in the chunk store."""

    def __init__(self, chunk_id: str, what: str = "") -> None:
        where = f" ({what})" if what else ""
        super().__init__(
            f"chunk {chunk_id} is missing from the store{where}; run `coralx fsck` to list "
            "everything affected"
        )
        self.chunk_id = chunk_id
        self.what = what


class ConcurrentUpdate(CoralxError):
    """Another process kept moving a ref while this one tried to; nothing was lost."""

    exit_code = 5


class LockTimeout(CoralxError, TimeoutError):
    """An advisory lock was held by another process for longer than the timeout."""

    exit_code = 5

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__(
            f"timed out after {timeout:.0f}s waiting for the lock {path}; another coralx "
            "process holds it. If none is running, the lock is stale: remove the file"
        )
        self.path = path
        self.timeout = timeout


class InvalidWeightsFile(InvalidValue):
    """A weights file (safetensors) whose header breaks one of the format's rules; nothing of
    it was read."""

    def __init__(self, path: str, rule: str) -> None:
        super().__init__(f"{path} is not a valid safetensors file: {rule}")
        self.path = path
        self.rule = rule


class OutputInsideStore(InvalidValue):
    """An output path that would write into the store's own files (``.coralx/``)."""

    def __init__(self, path: str, store: str) -> None:
        super().__init__(
            f"refusing to write {path}: it is inside the coralx store {store}, whose files "
            "only coralx itself writes; choose a path outside .coralx/"
        )
        self.path = path
        self.store = store


class InvalidConfig(InvalidValue):
    """A sweep configuration coralx cannot run: duplicate names, values JSON cannot hold, a
    config file that does not parse."""


class MissingDependency(CoralxError, ImportError):
    """An optional library a feature needs is not installed."""

    exit_code = 2

    def __init__(self, package: str, feature: str, extra: str) -> None:
        super().__init__(
            f"{feature} needs {package}, which is not installed; "
            f"install it with: pip install 'coralx[{extra}]'"
        )
        self.package = package


class MissingMainGuard(CoralxError):
    """A sweep script starts its sweep at import: each worker process, which imports the
    script to find the function, would start the sweep again."""

    exit_code = 2

    def __init__(self, script: str) -> None:
        super().__init__(
            f"{script} starts a sweep when it is imported. The subprocess executor imports the "
            "script in every worker to find the experiment function, so the sweep would start "
            "again in each of them. Put the call under a main guard:\n"
            '    if __name__ == "__main__":\n'
            "        train.run()\n"
            "Nothing was run."
        )
        self.script = script


class SweepBusy(CoralxError):
    """Another process is running this sweep right now."""

    exit_code = 5

    def __init__(self, sweep_id: str) -> None:
        super().__init__(
            f"sweep {sweep_id} is being run by another process; wait for it to finish, "
            "or start a new sweep with --new"
        )
        self.sweep_id = sweep_id


class NoActiveExperiment(ExperimentNotActive, ValueError):
    """``log``, ``end`` and friends called when the tracker has no active run."""

    def __init__(self, what: str = "log") -> None:
        super().__init__(
            f"No active experiment to {what}: start one with tracker.start(...) first "
            "(a run that ended, failed or was cancelled takes no more values)"
        )


class ExperimentAlreadyRunning(CoralxError, ValueError):
    """``start`` called while the tracker already has an active run."""

    exit_code = 2

    def __init__(self, experiment_id: str) -> None:
        super().__init__(
            f"experiment {experiment_id} is already running in this tracker; end it with "
            "tracker.end() (or fail/cancel it) before starting another, or use a second "
            "ExperimentTracker"
        )
        self.experiment_id = experiment_id


class IncompatibleWeights(CoralxError, RuntimeError):
    """A commit's tensors do not fit the module they are loaded into: keys the module has
    that the commit lacks (``missing_keys``), keys the commit has that the module lacks
    (``unexpected_keys``), or shapes that differ; as ``load_state_dict`` reports them."""

    exit_code = 2

    def __init__(
        self, missing_keys: Sequence[str], unexpected_keys: Sequence[str], detail: str = ""
    ) -> None:
        parts = []
        if missing_keys:
            parts.append("Missing key(s) in state_dict: " + ", ".join(map(repr, missing_keys)))
        if unexpected_keys:
            parts.append(
                "Unexpected key(s) in state_dict: " + ", ".join(map(repr, unexpected_keys))
            )
        if detail:
            parts.append(detail)
        super().__init__(
            "the commit does not fit the module. "
            + ". ".join(parts)
            + ". Load with strict=False to load the keys that match."
        )
        self.missing_keys = list(missing_keys)
        self.unexpected_keys = list(unexpected_keys)


class ImportSourceError(CoralxError, ValueError):
    """An import source coralx cannot read: missing, another format, or written by a schema
    version it does not know. Nothing is imported from it."""

    exit_code = 2

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"cannot import from {source}: {reason}")
        self.source = source
        self.reason = reason


class RemoteError(CoralxError):
    """A remote (a folder or an object store shared with others) cannot be used as asked.

    Raised before anything local changes: the message names the remote and what to do."""

    exit_code = 6


class RemoteNotFound(RemoteError, KeyError):
    """No remote of that name is configured."""

    exit_code = 2

    def __init__(self, name: str, known: Sequence[str] = ()) -> None:
        listed = ", ".join(known) if known else "none"
        super().__init__(
            f"no remote named {name!r} (configured: {listed}); add one with "
            f"`coralx remote add {name} URL`"
        )
        self.name = name

    def __str__(self) -> str:
        return self.message


class PushRejected(RemoteError):
    """A push that would not fast-forward a remote ref (someone else pushed first)."""


class RemoteCorrupted(RemoteError):
    """An object on the remote is damaged or truncated; it was refused and nothing landed."""
