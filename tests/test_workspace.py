"""The user's code: commit, branch, dirty flag, snapshots and their restore, ancestry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from coralx import Repository
from coralx.cli.main import cli
from coralx.errors import InvalidValue, RevisionNotFound
from coralx.experiments import ExperimentTracker

from .conftest import git


@pytest.fixture
def project(git_workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(git_workdir)
    (git_workdir / ".gitignore").write_text("data/\n*.log\n")
    git(git_workdir, "add", ".gitignore")
    git(git_workdir, "commit", "-q", "-m", "ignore")
    return git_workdir


def test_clean_tree_records_commit_and_branch(project: Path) -> None:
    repo = Repository(project, init=True)
    head = git(project, "rev-parse", "HEAD").strip()
    exp = ExperimentTracker(repo).start("clean")
    assert exp.code["commit"] == head
    assert exp.code["branch"] == "main"
    assert exp.code["dirty"] is False
    assert exp.code["snapshot"] is None
    assert exp.branch == "main"
    assert git(project, "status", "--porcelain") == ""  # .coralx stays out of git status


def test_dirty_tree_snapshot_and_restore(project: Path, tmp_path: Path) -> None:
    repo = Repository(project, init=True)
    (project / "train.py").write_text("print('edited')\n")  # tracked, modified
    (project / "new_module.py").write_text("X = 1\n")  # untracked, not ignored
    (project / "pkg").mkdir()
    (project / "pkg" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(project / "pkg" / "run.sh", 0o755)
    (project / "data").mkdir()
    (project / "data" / "big.bin").write_bytes(b"\0" * 1000)  # ignored
    (project / "out.log").write_text("log\n")  # ignored
    tracker = ExperimentTracker(repo)
    exp = tracker.start("dirty")
    tracker.end()
    assert exp.code["dirty"] is True
    assert exp.code["snapshot"]

    into = tmp_path / "restored"
    done = tracker.restore_code(exp.experiment_id, into)
    assert done["source"] == "snapshot"
    files = sorted(p.relative_to(into).as_posix() for p in into.rglob("*") if p.is_file())
    assert files == [".gitignore", "new_module.py", "pkg/run.sh", "train.py"]
    assert (into / "train.py").read_text() == "print('edited')\n"
    assert os.access(into / "pkg" / "run.sh", os.X_OK)

    # A second dirty run with the same files stores no new blobs or trees.
    objects = repo.path / "objects"
    before = sorted(p.name for p in objects.rglob("*") if p.is_file())
    again = tracker.start("dirty-again")
    tracker.end()
    assert again.code["snapshot"] == exp.code["snapshot"]
    assert sorted(p.name for p in objects.rglob("*") if p.is_file()) == before

    with pytest.raises(InvalidValue):
        tracker.restore_code(exp.experiment_id, into)  # not empty: refused, untouched
    assert (into / "train.py").read_text() == "print('edited')\n"


def test_restore_clean_run_from_its_commit(project: Path, tmp_path: Path) -> None:
    repo = Repository(project, init=True)
    tracker = ExperimentTracker(repo)
    exp = tracker.start("clean")
    tracker.end()
    (project / "train.py").write_text("print('later')\n")
    git(project, "commit", "-qam", "later")
    result = CliRunner().invoke(
        cli, ["exp", "code", exp.experiment_id, "--into", str(tmp_path / "c")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c" / "train.py").read_text() == "print('train')\n"


def test_ancestor_of(project: Path) -> None:
    repo = Repository(project, init=True)
    tracker = ExperimentTracker(repo)
    old = tracker.start("old")
    tracker.log("loss", 0.5)
    tracker.end()
    git(project, "checkout", "-q", "-b", "feature")
    (project / "train.py").write_text("print('feature')\n")
    git(project, "commit", "-qam", "feature work")
    new = tracker.start("feature")
    tracker.log("loss", 0.1)
    tracker.end()
    assert new.branch == "feature"
    on_main = tracker.find_best("loss", ancestor_of="main")
    assert [r["experiment_id"] for r in on_main] == [old.experiment_id]
    on_feature = tracker.find_best("loss", ancestor_of="feature")
    assert [r["experiment_id"] for r in on_feature] == [new.experiment_id, old.experiment_id]
    assert [e.name for e in tracker.list(ancestor_of="main")] == ["old"]
    assert [e.name for e in tracker.list(branch="feature")] == ["feature"]
    with pytest.raises(RevisionNotFound):
        tracker.list(ancestor_of="no-such-branch")


def test_outside_git_nothing_fails(repo: Repository, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    exp = ExperimentTracker(repo).start("nogit")
    assert exp.code == {"commit": None, "branch": None, "dirty": None, "snapshot": None,
                        "root": None, "skipped": []}  # fmt: skip
    with pytest.raises(RevisionNotFound):
        ExperimentTracker(repo).restore_code(exp.experiment_id, tmp_path / "x")


def test_without_a_git_program(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The code is read in process: no git program is needed to record it."""
    repo = Repository(project, init=True)
    head = git(project, "rev-parse", "HEAD").strip()
    import coralx.workspace as ws

    monkeypatch.setattr(ws, "_open_git", lambda root: None)
    monkeypatch.setenv("PATH", "/nonexistent")
    (project / "train.py").write_text("print('no git here')\n")
    tracker = ExperimentTracker(repo)
    exp = tracker.start("no-git-program")
    tracker.end()
    assert exp.code["commit"] == head and exp.code["branch"] == "main"
    assert exp.code["dirty"] is True and exp.code["snapshot"]
    into = project.parent / "restored-no-git"
    tracker.restore_code(exp.experiment_id, into)
    assert (into / "train.py").read_text() == "print('no git here')\n"


def test_a_layout_we_cannot_read_falls_back_to_git(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = Repository(project, init=True)
    import coralx.worktree as wt

    def broken(root: Path) -> None:
        raise ValueError("unsupported index version")

    monkeypatch.setattr(wt, "work_tree", broken)
    (project / "train.py").write_text("print('via git')\n")
    exp = ExperimentTracker(repo).start("fallback")
    assert exp.code["commit"] == git(project, "rev-parse", "HEAD").strip()
    assert exp.code["dirty"] is True and exp.code["snapshot"]
    into = project.parent / "restored-fallback"
    ExperimentTracker(repo).restore_code(exp.experiment_id, into)
    assert (into / "train.py").read_text() == "print('via git')\n"
