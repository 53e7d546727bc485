"""``coralx ui`` as a real process: it says where it binds, serves, and refuses a taken port."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from coralx import Repository

pytest.importorskip("uvicorn")

from .ui_server import running_ui


def test_ui_binds_localhost_and_serves(repo: Repository) -> None:
    import urllib.request

    with running_ui(repo.root) as server:
        assert "127.0.0.1" in server.banner
        assert "this machine only" in server.banner
        assert str(repo.path) in server.banner
        with urllib.request.urlopen(server.url + "api/runs") as response:
            assert response.status == 200
            assert b'"total":0' in response.read()


def test_ui_port_taken_is_a_clear_error(repo: Repository) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "coralx", "-C", str(repo.root), "ui", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "--port" in result.stderr
    assert "Traceback" not in result.stderr


def test_ui_without_store(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "coralx", "-C", str(tmp_path), "ui", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 4
    assert "coralx init" in result.stderr


def test_ui_says_when_it_serves_the_network(repo: Repository) -> None:
    import urllib.request

    with running_ui(repo.root, "--host", "0.0.0.0") as server:
        assert "bound to 0.0.0.0, the network" in server.banner
        assert server.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(server.url) as response:
            assert response.status == 200


def test_ui_help_names_the_defaults(runner: CliRunner) -> None:
    from coralx.cli.main import cli

    result = runner.invoke(cli, ["ui", "--help"])
    assert result.exit_code == 0
    assert "127.0.0.1" in result.output and "8765" in result.output
