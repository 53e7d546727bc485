"""``coralx exp env``, the environment in ``exp show``, packages in ``exp compare``."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from click.testing import CliRunner

from coralx import Repository, environment
from coralx.cli.main import cli
from coralx.experiments import ExperimentTracker


def run(runner: CliRunner, repo: Repository, *args: str):
    return runner.invoke(cli, ["-C", str(repo.root), "exp", *args])


@pytest.fixture
def two_envs(repo: Repository, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    tracker = ExperimentTracker(repo, capture_code=False)
    first = tracker.start("old-numpy")
    tracker.end()
    real = environment.capture()
    changed: dict[str, Any] = json.loads(json.dumps(real))
    changed["packages"]["numpy"] = "1.0.0"
    changed["packages"]["only-here"] = "0.1"
    monkeypatch.setattr(environment, "capture", lambda env=(): changed)
    monkeypatch.setattr(environment, "_stored", {})
    second = tracker.start("new-numpy")
    tracker.end()
    return [first.experiment_id, second.experiment_id]


def test_env_shows_all_and_requirements(runner: CliRunner, repo: Repository) -> None:
    tracker = ExperimentTracker(repo, capture_code=False)
    exp = tracker.start("envs")
    tracker.end()
    env = environment.capture()
    shown = run(runner, repo, "env", exp.experiment_id[:10])
    assert shown.exit_code == 0, shown.output
    assert re.search(rf"^python\s+{re.escape(env['python']['version'])} ", shown.output, re.M)
    for name, version in env["packages"].items():
        assert re.search(rf"^{re.escape(name)}\s+{re.escape(version)}$", shown.output, re.M)
    reqs = run(runner, repo, "env", exp.experiment_id, "--requirements")
    assert reqs.exit_code == 0
    assert reqs.output == environment.requirements(
        env, title=f"environment of run {exp.experiment_id}"
    )
    as_json = run(runner, repo, "env", exp.experiment_id, "--json")
    assert json.loads(as_json.output) == env


def test_env_errors(runner: CliRunner, repo: Repository) -> None:
    missing = run(runner, repo, "env", "ffffffff")
    assert missing.exit_code == 1 and "no experiment" in missing.output
    tracker = ExperimentTracker(repo, capture_code=False, capture_environment=False)
    bare = tracker.start("bare")
    tracker.end()
    none = run(runner, repo, "env", bare.experiment_id)
    assert none.exit_code != 0 and "recorded no environment" in none.output


def test_show_has_the_environment(runner: CliRunner, repo: Repository) -> None:
    tracker = ExperimentTracker(repo, capture_code=False)
    exp = tracker.start("shown")
    tracker.log("loss", 0.5)
    tracker.end()
    env = environment.capture()
    shown = runner.invoke(
        cli, ["-C", str(repo.root), "exp", "show", exp.experiment_id], env={"COLUMNS": "200"}
    )
    assert shown.exit_code == 0, shown.output
    assert f"Python {env['python']['version']}" in shown.output
    assert f"{len(env['packages'])} packages" in shown.output
    data = json.loads(run(runner, repo, "show", exp.experiment_id, "--json").output)
    assert data["environment_detail"] == env and data["environment"] == exp.environment


def test_compare_lists_packages_that_differ(
    runner: CliRunner, repo: Repository, two_envs: list[str]
) -> None:
    result = run(runner, repo, "compare", *two_envs, "--json")
    assert result.exit_code == 0, result.output
    packages = json.loads(result.output)["packages"]
    assert set(packages) == {"numpy", "only-here"}
    assert packages["numpy"][two_envs[1]] == "1.0.0"
    assert packages["only-here"] == {two_envs[0]: None, two_envs[1]: "0.1"}
    text = runner.invoke(
        cli, ["-C", str(repo.root), "exp", "compare", *two_envs], env={"COLUMNS": "200"}
    )
    assert "packages that differ" in text.output and "only-here" in text.output


def test_show_survives_a_missing_environment_blob(runner: CliRunner, repo: Repository) -> None:
    from coralx.records.blobs import BlobStore

    tracker = ExperimentTracker(repo, capture_code=False)
    exp = tracker.start("lost-blob")
    tracker.end()
    path = BlobStore(repo).path(exp.environment)
    path.chmod(0o644)
    path.unlink()
    shown = runner.invoke(
        cli, ["-C", str(repo.root), "exp", "show", exp.experiment_id], env={"COLUMNS": "200"}
    )
    assert shown.exit_code == 0, shown.output
    assert "lost-blob" in shown.output and "unreadable" in shown.output
    assert run(runner, repo, "env", exp.experiment_id).exit_code != 0
