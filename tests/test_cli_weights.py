"""The weight commands, through click's CliRunner, checking the store they leave behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from coralx import Repository
from coralx.cli.main import cli


def _run(runner: CliRunner, repo: Repository, *args: str, code: int = 0) -> str:
    result = runner.invoke(cli, ["-C", str(repo.root), *args])
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


def _file(tmp_path: Path, seed: int) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    weights = {"w": rng.normal(0, 0.02, (100, 20)).astype(np.float32), "b": np.arange(4)}
    path = tmp_path / f"w{seed}.npz"
    np.savez(path, **weights)
    return path, weights


def test_add_commit_log_show_export(repo: Repository, runner: CliRunner, tmp_path: Path) -> None:
    path, weights = _file(tmp_path, 1)
    staged = json.loads(_run(runner, repo, "add", str(path), "--json"))
    assert sorted(staged["staged"]) == ["b", "w"]
    assert (repo.path / "STAGE.json").is_file()
    made = json.loads(_run(runner, repo, "commit", "-m", "first", "--json"))
    assert not (repo.path / "STAGE.json").exists()
    assert Repository(repo.root).resolve("HEAD") == made["commit_hash"]
    got = Repository(repo.root).get_all_weights(made["commit_hash"])
    assert all(got[k].tobytes() == weights[k].tobytes() for k in weights)

    history = json.loads(_run(runner, repo, "log", "--json"))
    assert history[0]["message"] == "first" and len(history) == 2
    assert "first" in _run(runner, repo, "log", "-n", "1")
    shown = json.loads(_run(runner, repo, "show", "--json"))
    assert shown["tensors"]["w"]["shape"] == [100, 20]
    assert "w" in _run(runner, repo, "show", made["commit_hash"][:8])

    out = tmp_path / "out.safetensors"
    _run(runner, repo, "export", "HEAD", "-o", str(out))
    from safetensors.numpy import load_file

    assert load_file(str(out))["w"].tobytes() == weights["w"].tobytes()
    out2 = tmp_path / "out2.safetensors"
    _run(runner, repo, "checkout", "HEAD", "-o", str(out2))
    assert out2.read_bytes() == out.read_bytes()


def test_commit_without_stage_is_an_error(repo: Repository, runner: CliRunner) -> None:
    result = runner.invoke(cli, ["-C", str(repo.root), "commit", "-m", "x"])
    assert result.exit_code == 2
    assert "nothing is staged" in result.output


def test_branch_tag_checkout_diff(repo: Repository, runner: CliRunner, tmp_path: Path) -> None:
    for seed in (1, 2):
        path, _ = _file(tmp_path, seed)
        _run(runner, repo, "add", str(path))
        _run(runner, repo, "commit", "-m", f"c{seed}")
    first = repo.resolve("HEAD~1")
    _run(runner, repo, "branch", "side", "HEAD~1")
    assert repo.resolve("side") == first
    names = {b["name"] for b in json.loads(_run(runner, repo, "branch", "--json"))}
    assert names == {"main", "side"}
    _run(runner, repo, "tag", "best", "HEAD~1", "-m", "good one")
    tags = json.loads(_run(runner, repo, "tag", "--json"))
    assert tags == [{"name": "best", "commit": first, "message": "good one"}]
    _run(runner, repo, "tag", "best", code=2)  # tags never move
    _run(runner, repo, "checkout", "side")
    assert Repository(repo.root).current_branch() == "side"
    _run(runner, repo, "checkout", "best")
    assert Repository(repo.root).current_branch() is None
    _run(runner, repo, "checkout", "main")
    diff = json.loads(_run(runner, repo, "diff", "--json"))
    assert [c["name"] for c in diff["changed"]] == ["w"]
    assert diff["unchanged"] == ["b"]
    assert "unchanged" in _run(runner, repo, "diff", "best", "main")
    _run(runner, repo, "checkout", "no-such-rev", code=4)


def test_gc_fsck_du(repo: Repository, runner: CliRunner, tmp_path: Path) -> None:
    path, _ = _file(tmp_path, 3)
    _run(runner, repo, "add", str(path))
    _run(runner, repo, "commit", "-m", "kept")
    du = json.loads(_run(runner, repo, "du", "--json"))
    assert du["chunks"] == 2 and du["stored_bytes"] > 0
    assert "dedup ratio" in _run(runner, repo, "du")
    report = json.loads(_run(runner, repo, "gc", "--prune-age", "0", "--json"))
    assert report["removed_chunks"] == 0 and report["kept_chunks"] == 2
    assert json.loads(_run(runner, repo, "fsck", "--json"))["ok"] is True

    chunk = next(iter(repo.weights.chunks.iter_ids()))
    file = repo.weights.chunks.path(chunk)
    os.chmod(file, 0o644)
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF
    file.write_bytes(bytes(data))
    output = _run(runner, repo, "fsck", code=3)
    assert "damaged" in output and chunk in output


def test_export_with_progress_bar(
    repo: Repository, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coralx.cli import weights as cli_weights

    monkeypatch.setattr(cli_weights, "PROGRESS_BYTES", 0)  # every export counts as big
    path, weights = _file(tmp_path, 4)
    _run(runner, repo, "add", str(path))
    _run(runner, repo, "commit", "-m", "x")
    out = tmp_path / "big.safetensors"
    assert "Wrote 2 tensors" in _run(runner, repo, "export", "HEAD", "-o", str(out))
    from safetensors.numpy import load_file

    assert load_file(str(out))["w"].tobytes() == weights["w"].tobytes()
