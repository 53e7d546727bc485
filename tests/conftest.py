"""Shared fixtures: a fresh store, a git work tree, a CLI runner."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from coralx import Repository

# A shell starts a background job (`make test &`) with Ctrl-C ignored, and every process the
# tests start would inherit that: the tests that press Ctrl-C on a sweep or an export would
# see nothing happen. They test what a user at a terminal gets, so the suite undoes it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

HAS_GIT = shutil.which("git") is not None

pytest_plugins = ["tests.s3_server"]  # the s3_server / s3 fixtures (a real local S3 server)


@pytest.fixture(autouse=True)
def _isolated_identity(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """Tests never read the developer's git config or store."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("CORALX_AUTHOR_NAME", "Test Author")
    monkeypatch.setenv("CORALX_AUTHOR_EMAIL", "test@example.com")
    monkeypatch.delenv("CORALX_REPO", raising=False)
    from coralx import identity

    identity.author_identity.cache_clear()


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    """A fresh, empty store in a temporary folder."""
    return Repository.init(tmp_path / "project")


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "T",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "T",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return out.stdout


@pytest.fixture
def git_workdir(tmp_path: Path) -> Iterator[Path]:
    """A git work tree with one commit on branch ``main``."""
    if not HAS_GIT:
        pytest.skip("the git program is not installed")
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "train.py").write_text("print('train')\n")
    git(work, "add", "train.py")
    git(work, "commit", "-q", "-m", "first")
    yield work


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()
