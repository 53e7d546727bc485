"""Code capture read in process (coralx/worktree.py) agrees with git, run after run.

Each test runs twice: with inotify telling what changed (Linux), and walking the tree at every
look (``CORALX_NO_INOTIFY``), the path taken elsewhere."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from coralx import Repository
from coralx.cli.main import cli
from coralx.experiments import ExperimentTracker
from coralx.worktree import WorkTree

from .conftest import git


@pytest.fixture(params=["inotify", "walk"])
def project(request: pytest.FixtureRequest, git_workdir: Path, monkeypatch) -> Path:
    if request.param == "walk":
        monkeypatch.setenv("CORALX_NO_INOTIFY", "1")
    monkeypatch.chdir(git_workdir)
    (git_workdir / ".gitignore").write_text("data/\n*.log\n__pycache__/\n")
    (git_workdir / "pkg").mkdir()
    for i in range(5):
        (git_workdir / "pkg" / f"m{i}.py").write_text(f"X = {i}\n")
    git(git_workdir, "add", ".")
    git(git_workdir, "commit", "-q", "-m", "more files")
    return git_workdir


def _restored(runner: CliRunner, store: Path, run_id: str, into: Path) -> str:
    result = runner.invoke(cli, ["-C", str(store), "exp", "code", run_id, "--into", str(into)])
    assert result.exit_code == 0, result.output
    return (into / "train.py").read_text()


def test_each_run_restores_its_own_version(project: Path, tmp_path: Path) -> None:
    repo = Repository(project, init=True)
    tracker = ExperimentTracker(repo)
    versions = ["print('alpha')\n", "print('bravo')\n", "print('delta')\n", "print('omega')\n"]
    ids = []
    for text in versions:
        # Same size every time, edits within a few milliseconds: the stat data may be equal
        # but for the inode-free in-place write, which only a re-hash tells apart.
        with open(project / "train.py", "r+") as f:
            f.write(text)
        exp = tracker.start("edit")
        tracker.end()
        assert exp.code["dirty"] is True
        ids.append(exp.experiment_id)
    assert len({tracker.get_or_raise(i).code["snapshot"] for i in ids}) == len(versions)
    runner = CliRunner()
    for n, (run_id, text) in enumerate(zip(ids, versions)):
        assert _restored(runner, project, run_id, tmp_path / f"r{n}") == text


def test_edits_in_the_same_second(project: Path, tmp_path: Path) -> None:
    repo = Repository(project, init=True)
    tracker = ExperimentTracker(repo)
    target = project / "train.py"
    first = tracker.start("a")
    tracker.end()
    assert first.code["dirty"] is False
    stamp = target.stat().st_mtime_ns
    ids = []
    for text in ("print('AAAAA')\n", "print('BBBBB')\n"):
        target.write_text(text)
        os.utime(target, ns=(stamp, stamp))  # the same mtime as before: only content differs
        exp = tracker.start("same-second")
        tracker.end()
        ids.append(exp.experiment_id)
    runner = CliRunner()
    assert _restored(runner, project, ids[0], tmp_path / "a") == "print('AAAAA')\n"
    assert _restored(runner, project, ids[1], tmp_path / "b") == "print('BBBBB')\n"
    # Back to the committed text: the run is clean again and records no snapshot.
    git(project, "checkout", "--", "train.py")
    clean = tracker.start("clean-again")
    tracker.end()
    assert clean.code["dirty"] is False and clean.code["snapshot"] is None


def _git_view(project: Path) -> tuple[str | None, str | None, bool, list[str]]:
    def quiet(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True)
        return out.stdout.strip()

    head = quiet("rev-parse", "-q", "--verify", "HEAD")
    branch = quiet("symbolic-ref", "-q", "--short", "HEAD")
    dirty = bool(git(project, "status", "--porcelain", "--untracked-files=all"))
    out = git(project, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    files = sorted({p for p in out.split("\0") if p and (project / p).exists()})
    return head or None, branch or None, dirty, files


def _blob_ids(project: Path, files: list[str]) -> dict[str, str]:
    out = git(project, "hash-object", "--no-filters", *files) if files else ""
    return dict(zip(files, out.split()))


def test_agrees_with_git_through_random_edits(project: Path) -> None:
    """A random walk of what people do in a work tree; after each step the in-process view
    equals git's: HEAD, branch, dirty flag, the files a snapshot holds and their blob ids."""
    tree = WorkTree(project)
    rng = random.Random(11)
    names = ["train.py", "pkg/m0.py", "pkg/m3.py", "new.py", "pkg/sub/deep.py", "data/x.bin",
             "out.log", "pkg/__pycache__/m0.pyc", "notes.txt"]  # fmt: skip
    for step in range(60):
        action = rng.choice(["write", "write", "same-size", "delete", "add", "commit",
                             "branch", "chmod", "restore"])  # fmt: skip
        name = rng.choice(names)
        path = project / name
        if action in ("write", "same-size"):
            path.parent.mkdir(parents=True, exist_ok=True)
            text = f"v{rng.randrange(10)}\n" if action == "same-size" else f"{step}\n" * step
            path.write_text(text)
        elif action == "delete" and path.exists():
            path.unlink()
        elif action == "add":
            git(project, "add", "-A")
        elif action == "commit":
            git(project, "add", "-A")
            git(project, "commit", "-q", "--allow-empty", "-m", f"step {step}")
        elif action == "branch":
            git(project, "checkout", "-q", "-B", rng.choice(["main", "feature"]))
        elif action == "chmod" and path.exists():
            path.chmod(path.stat().st_mode ^ 0o100)
        elif action == "restore":
            git(project, "stash", "-q", "--include-untracked")
        state = tree.state()
        head, branch, dirty, files = _git_view(project)
        assert (state.commit, state.branch, state.dirty) == (head, branch, dirty), (step, action)
        assert sorted(state.files) == files, (step, action, name)
        ids = _blob_ids(project, files)
        assert {k: v[1] for k, v in state.files.items()} == ids, (step, action, name)
    tree.close()


@pytest.mark.parametrize("new_files", [1, 40])  # loose objects; one pack (PACK_AT and more)
def test_a_store_made_again_at_the_same_path_gets_its_own_objects(
    project: Path, tmp_path: Path, new_files: int
) -> None:
    import shutil

    (project / "train.py").write_text("print('dirty')\n")
    for i in range(new_files - 1):
        (project / f"extra{i}.py").write_text(f"E = {i}\n")
    first = Repository(project, init=True)
    tracker = ExperimentTracker(first)
    snapshot = tracker.start("a").code["snapshot"]
    tracker.end()
    # A second run of the unchanged tree: it learns which file holds the snapshot.
    assert tracker.start("a2").code["snapshot"] == snapshot
    tracker.end()
    tracker.close()
    first.close()
    shutil.rmtree(first.path)
    again = Repository(project, init=True)
    tracker = ExperimentTracker(again)
    exp = tracker.start("b")
    tracker.end()
    assert exp.code["snapshot"] == snapshot  # same files, same tree id
    done = tracker.restore_code(exp.experiment_id, tmp_path / "restored")
    assert done["files"] >= 1 and (tmp_path / "restored" / "train.py").read_text() == (
        "print('dirty')\n"
    )
    assert tracker.get_environment(exp.experiment_id) is not None  # its blob is in this store


def test_sparse_checkout_and_split_index_agree_with_git(project: Path) -> None:
    from coralx.workspace import capture

    git(project, "sparse-checkout", "set", "--no-cone", "/*", "!/pkg/")
    assert not (project / "pkg").exists()
    state = WorkTree(project).state()
    head, branch, dirty, files = _git_view(project)
    assert (state.commit, state.branch, state.dirty) == (head, branch, dirty)
    assert (branch, dirty) == ("main", False)
    assert sorted(state.files) == files
    git(project, "sparse-checkout", "disable")
    git(project, "update-index", "--split-index")
    (project / "pkg" / "m1.py").write_text("X = 'changed'\n")
    with pytest.raises(NotImplementedError):
        WorkTree(project).state()  # a split index is not read in process...
    info = capture(None, project)  # ...so capture asks git, with the same answer
    assert info["dirty"] is True and info["commit"] == head


def test_work_trees_kept_per_process_are_bounded(tmp_path: Path) -> None:
    from coralx import worktree

    roots = []
    for i in range(worktree.MAX_TREES + 3):
        root = tmp_path / f"w{i}"
        root.mkdir()
        git(root, "init", "-q", "-b", "main")
        roots.append(root)
        worktree.work_tree(root).state()
    kept = [k for k in worktree._trees if k.startswith(str(tmp_path))]
    assert len(worktree._trees) <= worktree.MAX_TREES
    assert kept[-1] == str(roots[-1]) and str(roots[0]) not in worktree._trees
    first = worktree.work_tree(roots[0])  # opened again on demand
    assert first.state().dirty is False and str(roots[0]) in worktree._trees
