"""The Repository facade: finds, creates and opens a ``.coralx/`` store and wires its parts.

>>> from coralx import Repository
>>> repo = Repository("./my-model", init=True)   # create if missing, else open
>>> repo = Repository.open("./my-model")          # open, or RepositoryNotFound
>>> repo = Repository.discover()                  # nearest .coralx/ at or above the cwd

The parts (the dulwich repository, the chunk store, the experiment index) are opened lazily,
the first time they are used, so opening a repository is cheap and ``import coralx`` imports
none of numpy, dulwich, git or pydantic.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import tomllib
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _fs
from ._version import __version__
from .errors import NotACoralxStore, RepositoryNotFound, UnsupportedFormat

if TYPE_CHECKING:
    from dulwich.repo import Repo as DulwichRepo

    from .graph import BranchInfo, TagInfo, WeightCommit
    from .remote.sync import PullReport, PushReport
    from .store.reader import WeightReader
    from .weight_history import DuReport, FsckReport, GcReport, WeightDiff, WeightHistory

__all__ = ["FORMAT_VERSION", "STORE_DIR", "Repository", "RepositoryStatus"]

STORE_DIR = ".coralx"
FORMAT_VERSION = 1
DEFAULT_BRANCH = "main"
CONFIG_FILE = "config.toml"
_INIT_PREFIX = ".coralx.init-"
_EXCLUDE_LINE = "/.coralx/"


@dataclass
class RepositoryStatus:
    """What `coralx status` shows: where the store is and what it holds."""

    root: str
    store: str
    format_version: int
    branch: str | None
    head: str | None
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "store": self.store,
            "format_version": self.format_version,
            "branch": self.branch,
            "head": self.head,
            "counts": dict(self.counts),
        }


class Repository:
    """A coralx store: weights, experiment records and code snapshots under ``<root>/.coralx``.

    ``Repository(path)`` opens the store in ``path`` (the project folder, or the ``.coralx``
    folder itself); ``Repository(path, init=True)`` creates it first if it does not exist.
    """

    def __init__(self, path: str | os.PathLike[str] = ".", init: bool = False) -> None:
        root = Path(path).expanduser().resolve()
        if root.name == STORE_DIR and (root / CONFIG_FILE).is_file():
            root = root.parent
        if init:
            _create_store(root)
        self.root: Path = root
        self.path: Path = root / STORE_DIR
        self.config: dict[str, Any] = _read_config(self.path)
        # Defaults for commit()'s links (experiment_id, code_commit, code_branch): the tracker
        # sets them while a run is active, so a commit inside a run is linked to it.
        self.commit_context: dict[str, str] = {}
        # Called with each new WeightCommit after its branch ref has moved.
        self.commit_listeners: list[Callable[[WeightCommit], None]] = []
        # Trackers (and other parts) opened on this repository, closed with it.
        self._closables: weakref.WeakSet[Any] = weakref.WeakSet()

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def init(cls, path: str | os.PathLike[str] = ".") -> Repository:
        """Create a store in ``path`` (idempotent) and open it."""
        return cls(path, init=True)

    @classmethod
    def open_store(cls, path: str | os.PathLike[str] = ".") -> Repository:
        """Open the store in ``path``; raise :class:`RepositoryNotFound` if there is none."""
        return cls(path, init=False)

    open: Any = None  # set below: Repository.open(path) opens a store, repo.open(rev) a revision

    @classmethod
    def discover(cls, start: str | os.PathLike[str] | None = None) -> Repository:
        """Open the nearest store at or above ``start`` (default: the current folder),
        the way git finds ``.git``."""
        here = Path(start if start is not None else os.getcwd()).expanduser().resolve()
        for folder in (here, *here.parents):
            if (folder / STORE_DIR).exists():
                return cls(folder)
        raise RepositoryNotFound(str(here))

    def __repr__(self) -> str:
        return f"Repository({str(self.root)!r})"

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Finish the background work of this repository and close what it opened: the
        trackers opened on it are closed (a run still active is failed), the git object
        database is closed. Once this returns
        no thread of coralx writes into the store. Using the repository again reopens its
        parts.

        >>> with Repository("./my-model", init=True) as repo:
        ...     repo.stage_weights(weights); repo.commit("trained")
        """
        for part in list(self._closables):
            part.close()
        git = self.__dict__.pop("git", None)
        if git is not None:
            git.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lazily opened parts ------------------------------------------------------------------

    @cached_property
    def git(self) -> DulwichRepo:
        """The store's bare git repository (dulwich), holding weight commits and code trees."""
        from dulwich.repo import Repo

        git = Repo(str(self.path))
        # A Repository dropped without close() still closes the pack files it opened.
        weakref.finalize(self, git.close)
        return git

    @cached_property
    def weights(self) -> WeightHistory:
        """The weight history: chunk store, staging area and commit graph."""
        from .weight_history import WeightHistory

        return WeightHistory(self)

    # -- weights ------------------------------------------------------------------------------

    def stage_weights(
        self, weights: Mapping[str, Any] | Any, *, optimizer: Any = None
    ) -> list[str]:
        """Stage tensors (numpy arrays or torch tensors) for the next :meth:`commit`.

        Their chunks are written now, so later changes to the arrays do not leak into the
        commit. A commit holds exactly the tensors staged since the last one. Bad input (a
        non-array, an object dtype, an empty name) raises before anything is stored.

        ``weights`` may be a torch ``nn.Module``: its ``state_dict`` is staged, tied
        parameters once (they come back tied from :meth:`state_dict`). ``optimizer`` adds a
        torch optimizer's state: its tensors under ``optimizer/``, the rest as JSON.

        >>> repo.stage_weights({"encoder.weight": w, "encoder.bias": b})
        >>> repo.stage_weights(model, optimizer=opt)
        """
        from .store.torch_compat import ModuleTensors, is_module, module_tensors

        if isinstance(weights, ModuleTensors):  # a snapshot taken before (cpu_copy)
            parts = weights
        elif is_module(weights) or optimizer is not None:
            parts = module_tensors(weights, optimizer)
        else:
            return self.weights.stage_weights(weights)
        return self.weights.stage_weights(
            parts.tensors, aliases=parts.aliases, torch_layout=parts.layout
        )

    def state_dict(
        self, rev: str | None = None, device: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """(module state dict, optimizer state dict or None) of a revision, as torch tensors
        on ``device`` (default CPU); names that were tied share one tensor again.

        >>> state, opt_state = repo.state_dict("best")
        >>> state["lm_head.weight"] is state["embed.weight"]
        True
        """
        from .store.torch_compat import state_dicts

        commit = self.resolve(rev or "HEAD")
        manifest = self.weights.manifest(commit)
        tensors = self.get_all_weights(commit, framework="torch")
        return state_dicts(tensors, manifest.torch if manifest else {}, device)

    def load_into(
        self,
        module: Any,
        rev: str | None = None,
        *,
        strict: bool = True,
        map_location: Any = None,
        optimizer: Any = None,
    ) -> Any:
        """Load a revision's weights into a torch module (and its optimizer state into
        ``optimizer``); returns ``(missing_keys, unexpected_keys)`` as ``load_state_dict``.

        With ``strict`` (the default) keys that do not match raise
        :class:`~coralx.errors.IncompatibleWeights` listing them; ``map_location`` (a device)
        is where the tensors are put before they are copied into the module.

        >>> repo.load_into(model, "best", map_location="cuda")
        _IncompatibleKeys(missing_keys=[], unexpected_keys=[])
        """
        from .errors import InvalidValue
        from .store.torch_compat import load_module

        state, opt_state = self.state_dict(rev, map_location)
        if optimizer is not None and opt_state is None:
            raise InvalidValue(
                f"revision {rev or 'HEAD'} holds no optimizer state; stage it with "
                "repo.stage_weights(model, optimizer=opt)"
            )
        result = load_module(module, state, strict)
        if optimizer is not None:
            optimizer.load_state_dict(opt_state)
        return result

    def add_file(self, path: str | os.PathLike[str]) -> list[str]:
        """Stage every tensor of a ``.safetensors`` or ``.npz`` file (nothing is unpickled).

        >>> repo.add_file("model.safetensors"); repo.commit("imported")
        """
        return self.weights.add_file(path)

    def commit(
        self,
        message: str,
        *,
        branch: str | None = None,
        experiment_id: str | None = None,
        code_commit: str | None = None,
        code_branch: str | None = None,
    ) -> WeightCommit:
        """Commit the staged tensors.

        Where it goes: to ``branch`` when given; else, for a commit linked to a run (inside
        a tracked run, or with ``experiment_id``), to the run's own line
        ``refs/runs/<experiment id>`` (branches do not move); else to HEAD's branch (or a
        detached HEAD). Links left None come from :attr:`commit_context`. A branch that
        does not exist yet starts at HEAD's commit. Concurrent commits to one ref are
        serialised by compare-and-swap: each lands on top of the other, none is lost.

        >>> commit = repo.commit("epoch 3: val_loss 0.41")
        >>> commit.commit_hash
        """
        ctx = self.commit_context
        links = {
            "experiment_id": experiment_id or ctx.get("experiment_id"),
            "code_commit": code_commit or ctx.get("code_commit"),
            "code_branch": code_branch or ctx.get("code_branch"),
        }
        result = self.weights.commit(message, branch=branch, links=links)
        for listener in list(self.commit_listeners):
            listener(result)
        return result

    def get_all_weights(
        self,
        rev: str = "HEAD",
        framework: str = "numpy",
        *,
        names: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """Every tensor of a revision (or only ``names``), bit-exact, each chunk verified.

        ``rev`` defaults to ``"HEAD"``; ``None`` is refused (:class:`InvalidValue`), because
        a run without a commit has ``commit_hash`` None and must not load HEAD's weights.
        An unknown name in ``names`` is a :class:`TensorNotFound` listing close names.

        >>> weights = repo.get_all_weights(best["commit_hash"])
        >>> state = repo.get_all_weights("main", framework="torch")
        >>> part = repo.get_all_weights("main", names=["encoder.weight"])
        """
        return self.weights.get_all_weights(rev, framework, names=names)

    def get_weight(self, name: str, rev: str = "HEAD", framework: str = "numpy") -> Any:
        """One tensor of a revision; :class:`~coralx.errors.TensorNotFound` if absent.

        >>> repo.get_weight("encoder.weight", "HEAD~1")
        """
        return self.weights.get_weight(name, rev, framework)

    def open_weights(self, rev: str = "HEAD") -> WeightReader:
        """A read-only mapping of a revision's tensors, like ``safetensors.safe_open``:
        names, shapes and dtypes without decoding anything; a tensor is decoded (and
        verified) when it is read. ``repo.open(rev)`` is the same.

        >>> with repo.open("best") as f:
        ...     f.keys(), f.shape("encoder.weight")
        ...     w = f["encoder.weight"]          # or f.get_tensor(name)
        """
        return self.weights.open(rev)

    def resolve(self, rev: str) -> str:
        """The commit id a revision names: a full or short commit id, a branch, a tag,
        ``HEAD``, ``X~n`` / ``X^``, or an experiment id (or unambiguous prefix of one).

        >>> repo.resolve("main~2")
        """
        return self.weights.resolve(rev)

    def checkout(self, rev: str) -> WeightCommit:
        """Move HEAD to a branch (later commits go there) or to any revision (detached).

        >>> repo.checkout("main"); repo.checkout("v1.0")
        """
        return self.weights.checkout(rev)

    def create_branch(self, name: str, rev: str | None = None, force: bool = False) -> BranchInfo:
        """Create a branch at ``rev`` (default HEAD).

        >>> repo.create_branch("lr-sweep", "main~3")
        """
        return self.weights.create_branch(name, rev, force)

    def branches(self) -> list[BranchInfo]:
        """Every branch with its head commit, the current one marked."""
        return self.weights.branches()

    def run_lines(self) -> dict[str, str]:
        """Each run with weight commits, and the head of its own line of commits.

        >>> repo.run_lines()   # {"0190a3c1...": "<commit id>"}
        """
        return self.weights.commit_graph.run_lines()

    def tag(self, name: str, rev: str | None = None, message: str | None = None) -> TagInfo:
        """Tag a revision (annotated when a message is given). Tags never move.

        >>> repo.tag("best", commit.commit_hash, message="val_loss 0.31")
        """
        return self.weights.tag(name, rev, message)

    def tags(self) -> list[TagInfo]:
        """Every tag with the commit it names."""
        return self.weights.tags()

    def log(
        self, rev: str | None = None, limit: int | None = None, run: str | None = None
    ) -> list[WeightCommit]:
        """Commits reachable from ``rev`` (default HEAD), newest first; with ``run`` (an
        experiment id), that run's own line of commits.

        >>> [c.message for c in repo.log(limit=5)]
        >>> repo.log(run=exp.experiment_id)
        """
        return self.weights.log(rev, limit, run)

    def diff(self, rev_a: str, rev_b: str) -> WeightDiff:
        """Tensors added, removed and changed (max |change|, L2 of the change, fraction of
        elements changed) from ``rev_a`` to ``rev_b``.

        >>> repo.diff("HEAD~1", "HEAD").changed
        """
        return self.weights.diff(rev_a, rev_b)

    def export(
        self,
        rev: str,
        path: str | os.PathLike[str],
        progress: Callable[[int], None] | None = None,
        *,
        only: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """Write a revision's tensors to a safetensors file, streamed, with the commit's
        metadata in its ``__metadata__``. ``only``: glob patterns (``"encoder.*"``) or names;
        the file holds the tensors matching any of them.

        The file appears under ``path`` only when complete (a temporary file beside it is
        renamed): an interrupted export leaves nothing under that name.

        >>> repo.export("best", "model.safetensors")
        >>> repo.export("best", "part.safetensors", only=["encoder.*"])
        """
        return self.weights.export(rev, path, progress, only=only)

    def gc(self, prune_age: float = 3600.0, dry_run: bool = False) -> GcReport:
        """Delete chunks no ref, tag, HEAD, stage or experiment record reaches and that are
        older than ``prune_age`` seconds.

        >>> repo.gc().freed_bytes
        """
        return self.weights.gc(prune_age, dry_run)

    def fsck(self, repair: bool = False) -> FsckReport:
        """Decode every reachable chunk against its id, naming damaged tensors and commits, and
        check every record, journal, blob and sweep file. With ``repair``, damaged records are
        first restored from the index's copy (metrics from their journals).

        >>> assert repo.fsck().ok
        """
        if repair:
            self.repair_records()
        return self.weights.fsck()

    def repair_records(self) -> list[str]:
        """Restore each damaged record from its copy in the index; the ids restored."""
        from .records.checks import check_store_files
        from .records.store import RecordStore

        store = RecordStore(self.path)
        done = []
        for bad in check_store_files(self.path):
            eid = Path(bad["file"]).stem
            if bad["kind"] == "record" and store.repair(eid):
                done.append(eid)
        return done

    def du(self) -> DuReport:
        """Stored, unique raw and logical bytes of the weights, and their ratios."""
        return self.weights.du()

    # -- remotes ------------------------------------------------------------------------------

    def add_remote(self, name: str, url: str, endpoint_url: str | None = None) -> dict[str, Any]:
        """Remember a remote: a folder (a bare git repository plus coralx's folders) or
        ``s3://bucket/prefix`` (``endpoint_url`` for any S3-compatible service). No secret
        is ever stored: S3 credentials come from the standard AWS chain.

        >>> repo.add_remote("origin", "/mnt/shared/bert.coralx")
        """
        from .remote import add_remote

        return add_remote(self, name, url, endpoint_url)

    def remotes(self) -> list[dict[str, Any]]:
        """The configured remotes (name, url, kind, endpoint_url)."""
        from .remote import list_remotes

        return list_remotes(self)

    def push(
        self, remote: str = "origin", branches: list[str] | None = None, force: bool = False
    ) -> PushReport:
        """Send the current branch (or ``branches``), tags, run lines, records, journals,
        blobs and sweeps: only what the remote lacks. A branch that would not fast-forward
        is refused (fetch first, or ``force=True``).

        >>> repo.push("origin").chunks_sent
        """
        from .remote import push

        return push(self, remote, branches, force)

    def fetch(self, remote: str = "origin") -> PullReport:
        """Bring the remote's runs and weights here (verified); its branches appear as
        ``origin/NAME`` in every revision argument. Local branches do not move."""
        from .remote import fetch

        return fetch(self, remote)

    def pull(self, remote: str = "origin") -> PullReport:
        """:meth:`fetch`, then fast-forward the current branch to the remote's.

        >>> repo.pull("origin"); tracker.list()   # runs from every machine
        """
        from .remote import pull

        return pull(self, remote)

    @classmethod
    def clone(
        cls, url: str, path: str | os.PathLike[str], endpoint_url: str | None = None
    ) -> Repository:
        """A new store in ``path`` holding everything on the remote at ``url`` (as ``origin``).

        >>> repo = Repository.clone("s3://team-bucket/projects/bert", "bert")
        """
        from .remote import open_remote

        dest = Path(path).expanduser().resolve()
        if (dest / STORE_DIR).exists():
            raise NotACoralxStore(
                str(dest / STORE_DIR), "it exists already; clone into a new folder"
            )
        repo = cls(dest, init=True)
        try:
            repo.add_remote("origin", url, endpoint_url)
            open_remote(repo, "origin").check_format(create=False)
        except BaseException:
            shutil.rmtree(dest / STORE_DIR, ignore_errors=True)
            raise
        repo.pull("origin")
        return repo

    # -- status -------------------------------------------------------------------------------

    @property
    def format_version(self) -> int:
        return int(self.config["core"]["format_version"])

    def current_branch(self) -> str | None:
        """The branch HEAD points to, or None when HEAD is detached."""
        head = (self.path / "HEAD").read_text(encoding="utf-8").strip()
        prefix = "ref: refs/heads/"
        return head[len(prefix) :] if head.startswith(prefix) else None

    def head_commit(self) -> str | None:
        """The commit id HEAD points to, or None for a store without commits."""
        try:
            return self.git.head().decode("ascii")
        except KeyError:
            return None

    def status(self) -> RepositoryStatus:
        """Where the store is, its branch and head, and how many of each thing it holds."""
        refs = self.git.refs.keys()
        counts = {
            "branches": sum(1 for r in refs if r.startswith(b"refs/heads/")),
            "tags": sum(1 for r in refs if r.startswith(b"refs/tags/")),
            "chunks": _count_files(self.path / "chunks", depth=2),
            "experiments": _count_files(self.path / "experiments", suffix=".json"),
        }
        return RepositoryStatus(
            root=str(self.root),
            store=str(self.path),
            format_version=self.format_version,
            branch=self.current_branch(),
            head=self.head_commit(),
            counts=counts,
        )


# -- creating a store --------------------------------------------------------------------------


class _StoreOrRevision:
    """``Repository.open(path)`` opens a store (on the class); ``repo.open(rev)`` opens a
    revision's tensors for reading (on an instance, :meth:`Repository.open_weights`)."""

    def __get__(self, obj: Repository | None, owner: type[Repository]) -> Callable[..., Any]:
        if obj is None:
            return owner.open_store
        return obj.open_weights


Repository.open = _StoreOrRevision()


def _create_store(root: Path) -> None:
    """Create ``root/.coralx`` atomically, or check the one that is there.

    The store is built whole in a temporary folder beside its final place and renamed into
    place. ``rename`` onto an existing, non-empty folder fails, so when several processes
    initialise at once exactly one rename wins, the others find a complete store and discard
    their copy: nobody ever sees a half-made store.
    """
    root.mkdir(parents=True, exist_ok=True)
    dest = root / STORE_DIR
    if dest.exists() and not _is_empty_dir(dest):
        _read_config(dest)  # raises if it is not a coralx store we can open
        _exclude_from_git(root)
        return
    _remove_stale_builds(root)
    tmp = root / f"{_INIT_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        _build_store(tmp)
        try:
            os.rename(tmp, dest)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise
            # Another process won the race (or a file is in the way: _read_config says so).
        else:
            _fs.fsync_dir(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _read_config(dest)
    _exclude_from_git(root)


def _build_store(path: Path) -> None:
    from dulwich.repo import Repo

    repo = Repo.init_bare(str(path), mkdir=True, default_branch=DEFAULT_BRANCH.encode())
    try:
        for sub in ("chunks", "experiments"):
            (path / sub).mkdir()
        _fs.atomic_write(path / CONFIG_FILE, _config_text(), fsync=False)
        _write_root_commit(repo)
    finally:
        repo.close()
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fs.fsync_dir(Path(dirpath))


def _write_root_commit(repo: Any) -> None:
    """An empty root commit, so that the weight history starts somewhere and
    ``git --git-dir=.coralx log`` has something to show from the first moment."""
    import time

    from dulwich.objects import Commit, Tree

    from .identity import author_identity

    tree = Tree()
    repo.object_store.add_object(tree)
    commit = Commit()
    commit.tree = tree.id
    commit.parents = []
    ident = author_identity().encode("utf-8")
    commit.author = commit.committer = ident
    commit.author_time = commit.commit_time = int(time.time())
    commit.author_timezone = commit.commit_timezone = 0
    commit.encoding = b"UTF-8"
    commit.message = b"Initialise coralx store\n"
    repo.object_store.add_object(commit)
    from .graph import LocalRefs, swap

    swap(LocalRefs(repo), f"refs/heads/{DEFAULT_BRANCH}".encode(), None, commit.id)


def _config_text() -> str:
    # A tiny, fixed document: written by hand rather than adding a TOML writer dependency.
    return (
        "# coralx store settings. format_version tells coralx how to read this store.\n"
        "[core]\n"
        f"format_version = {FORMAT_VERSION}\n"
        f'created_by = "coralx {__version__}"\n'
    )


def _read_config(store: Path) -> dict[str, Any]:
    """Read and check ``config.toml``; raise if ``store`` is not a store this coralx can open."""
    if not store.exists():
        raise RepositoryNotFound(str(store.parent))
    if not store.is_dir():
        raise NotACoralxStore(str(store), "it is a file, not a folder")
    config_path = store / CONFIG_FILE
    if not config_path.is_file():
        if _is_empty_dir(store):
            raise NotACoralxStore(str(store), "the folder is empty; run `coralx init`")
        raise NotACoralxStore(str(store), f"it has no {CONFIG_FILE}")
    try:
        config = tomllib.loads(config_path.read_text(encoding="utf-8"))
        version = config["core"]["format_version"]
    except (tomllib.TOMLDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise NotACoralxStore(str(store), f"its {CONFIG_FILE} is unreadable: {exc}") from None
    if not isinstance(version, int) or version < 1:
        raise NotACoralxStore(str(store), f"format_version {version!r} is not a version")
    if version > FORMAT_VERSION:
        raise UnsupportedFormat(str(store), version, FORMAT_VERSION)
    if not (store / "HEAD").is_file() or not (store / "objects").is_dir():
        raise NotACoralxStore(str(store), "its git metadata (HEAD, objects/) is missing")
    return config


def _is_empty_dir(path: Path) -> bool:
    try:
        return path.is_dir() and not any(path.iterdir())
    except OSError:
        return False


def _remove_stale_builds(root: Path) -> None:
    """Remove temporary build folders left by an init that crashed more than an hour ago."""
    import time

    for tmp in root.glob(f"{_INIT_PREFIX}*"):
        with contextlib.suppress(OSError):
            if time.time() - tmp.stat().st_mtime > 3600:
                shutil.rmtree(tmp, ignore_errors=True)


def _count_files(folder: Path, depth: int = 1, suffix: str = "") -> int:
    if not folder.is_dir():
        return 0
    pattern = "/".join(["*"] * depth) + suffix
    return sum(1 for p in folder.glob(pattern) if not p.name.startswith("."))


# -- keeping the store out of the user's git status --------------------------------------------


def find_git_dir(start: Path) -> Path | None:
    """The git folder (common dir for worktrees) of the work tree containing ``start``."""
    for folder in (start, *start.parents):
        dot_git = folder / ".git"
        if dot_git.is_dir():
            return dot_git
        if dot_git.is_file():
            text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
            if not text.startswith("gitdir:"):
                return None
            gitdir = (folder / text[len("gitdir:") :].strip()).resolve()
            common = gitdir / "commondir"
            if common.is_file():
                gitdir = (gitdir / common.read_text(encoding="utf-8").strip()).resolve()
            return gitdir
    return None


def _exclude_from_git(root: Path) -> None:
    """Add the store to ``.git/info/exclude`` of the enclosing work tree, once."""
    git_dir = find_git_dir(root)
    if git_dir is None:
        return
    work_tree = _work_tree_of(root)
    rel = root.relative_to(work_tree).as_posix() if work_tree else "."
    line = _EXCLUDE_LINE if rel == "." else f"/{rel}{_EXCLUDE_LINE}"
    info = git_dir / "info"
    info.mkdir(exist_ok=True)
    exclude = info / "exclude"
    with _fs.FileLock(info / "coralx-exclude.lock", timeout=30):
        text = exclude.read_text(encoding="utf-8") if exclude.exists() else ""
        if line in text.splitlines():
            return
        if text and not text.endswith("\n"):
            text += "\n"
        _fs.atomic_write(exclude, f"{text}{line}\n")


def _work_tree_of(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return None
