"""The command line, through click's CliRunner, checking the state it leaves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from coralx import Repository
from coralx.cli.main import cli
from coralx.repository import STORE_DIR

from .conftest import git


def test_version(runner: CliRunner) -> None:
    from coralx import __version__

    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_init_then_status(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["init", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Initialised" in result.output
    assert "coralx status" in result.output
    assert Repository.open(tmp_path).head_commit() is not None

    again = runner.invoke(cli, ["init", str(tmp_path)])
    assert again.exit_code == 0
    assert "Found existing" in again.output

    status = runner.invoke(cli, ["-C", str(tmp_path), "status", "--json"])
    assert status.exit_code == 0, status.output
    info = json.loads(status.output)
    assert info["branch"] == "main"
    assert info["store"] == str(tmp_path / STORE_DIR)


def test_init_json(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["init", "--json", str(tmp_path)])
    assert json.loads(result.output)["created"] is True
    result = runner.invoke(cli, ["init", "--json", str(tmp_path)])
    assert json.loads(result.output)["created"] is False


def test_status_discovers_from_subfolder(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Repository.init(tmp_path)
    sub = tmp_path / "deep" / "er"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    result = runner.invoke(cli, ["status"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert str(tmp_path / STORE_DIR) in result.output


def test_status_without_store_is_a_clear_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["-C", str(tmp_path), "status"])
    assert result.exit_code == 4
    assert "coralx init" in result.output
    assert "Traceback" not in result.output


def test_init_over_a_foreign_file_fails_and_keeps_it(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / STORE_DIR).write_text("mine")
    result = runner.invoke(cli, ["init", str(tmp_path)])
    assert result.exit_code == 1
    assert "not a coralx store" in result.output
    assert (tmp_path / STORE_DIR).read_text() == "mine"


def test_repo_from_environment(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Repository.init(tmp_path)
    monkeypatch.setenv("CORALX_REPO", str(tmp_path))
    result = runner.invoke(cli, ["status", "--json"])
    assert json.loads(result.output)["root"] == str(tmp_path)


def test_init_in_git_repo_end_to_end(git_workdir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "coralx", "init"], cwd=git_workdir, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert git(git_workdir, "status", "--porcelain") == ""
    log = git(git_workdir, "--git-dir=.coralx", "log", "--oneline")
    assert "Initialise coralx store" in log
