"""The environment recorded with every run (coralx/environment.py)."""

from __future__ import annotations

import importlib.metadata
import json
import re
import sys
from pathlib import Path

import pytest

from coralx import Repository, environment
from coralx.experiments import ExperimentTracker


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_packages_agree_with_importlib_metadata() -> None:
    env = environment.capture()
    expected: dict[str, str] = {}
    for dist in importlib.metadata.distributions():  # first on sys.path wins, as for imports
        name = dist.metadata["Name"]
        if name:
            expected.setdefault(_normal(name), dist.version)
    assert env["packages"] == dict(sorted(expected.items()))
    assert env["packages"]["numpy"] == importlib.metadata.version("numpy")


def test_what_is_recorded() -> None:
    env = environment.capture()
    assert env["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert env["python"]["implementation"] == "CPython"
    assert env["machine"]["cpu_count"] >= 1 and env["machine"]["memory_bytes"] > 2**20
    assert env["host"] and env["platform"]["system"]
    assert env["command"]["argv"] == environment._masked_argv(sys.argv)
    direct = importlib.metadata.distribution("coralx").read_text("direct_url.json")
    editable = bool(direct and json.loads(direct).get("dir_info", {}).get("editable"))
    assert env["coralx"]["editable"] is editable


def test_gpus_only_when_torch_is_already_imported() -> None:
    pytest.importorskip("torch")
    import subprocess

    script = (
        "import json, sys\n"
        "from coralx import environment\n"
        "before = environment.capture()['gpu']\n"
        "assert 'torch' not in sys.modules\n"
        "import torch\n"
        "environment._cache.clear()\n"
        "print(json.dumps([before, environment.capture()['gpu'], torch.cuda.device_count()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    before, after, count = json.loads(out.stdout)
    assert before is None
    assert after["count"] == count and "cuda" in after


def test_git_place_is_relative_to_the_root(git_workdir: Path, monkeypatch) -> None:
    (git_workdir / "src" / "exp").mkdir(parents=True)
    monkeypatch.chdir(git_workdir / "src" / "exp")
    monkeypatch.setattr(environment, "_cache", {})
    env = environment.capture()
    assert env["git"] == {"root": str(git_workdir.resolve()), "cwd": "src/exp"}


def test_secrets_are_never_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environment, "_cache", {})
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("MY_DATASET", "v3")
    for name in ("WANDB_API_KEY", "HF_TOKEN", "DB_PASSWORD", "aws_secret_access_key"):
        monkeypatch.setenv(name, "hunter2")
    monkeypatch.setattr(sys, "argv", ["train.py", "--api-key=hunter2", "--token", "hunter2",
                                      "--lr", "0.1"])  # fmt: skip
    env = environment.capture(env=["MY_DATASET", "WANDB_API_KEY", "HF_TOKEN", "DB_PASSWORD"])
    assert env["env"]["OMP_NUM_THREADS"] == "3" and env["env"]["MY_DATASET"] == "v3"
    assert "hunter2" not in json.dumps(env)
    assert env["command"]["argv"] == ["train.py", "--api-key=***", "--token", "***", "--lr", "0.1"]


def test_stored_once_for_many_runs(repo: Repository) -> None:
    tracker = ExperimentTracker(repo, capture_code=False)
    ids = []
    for i in range(20):
        ids.append(tracker.start(f"r{i}").experiment_id)
        tracker.end()
    blob_ids = {tracker.get_or_raise(i).environment for i in ids}
    assert len(blob_ids) == 1 and None not in blob_ids
    assert len([p for p in (repo.path / "blobs").rglob("*") if p.is_file()]) == 1
    stored = tracker.get_environment(ids[0])
    assert stored == environment.capture()
    off = ExperimentTracker(repo, capture_code=False, capture_environment=False)
    none = off.start("without")
    off.end()
    assert none.environment is None and off.get_environment(none.experiment_id) is None


def test_requirements_file_pins_every_package() -> None:
    from packaging.requirements import Requirement

    env = environment.capture()
    text = environment.requirements(env, title="run 0194c2")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    pinned = {}
    for line in lines:
        if line.startswith("-e "):
            assert env["coralx"]["editable"] and Path(line[3:]).is_dir()
            continue
        req = Requirement(line)
        pinned[_normal(req.name)] = str(req.specifier)
    assert pinned["numpy"] == f"=={env['packages']['numpy']}"
    assert "pip" not in pinned
    expected = set(env["packages"]) - {"pip", "setuptools", "wheel"}
    if env["coralx"]["editable"]:
        expected.discard("coralx")
    assert set(pinned) == expected
    assert text.startswith("# run 0194c2\n")


def test_diff_packages() -> None:
    a = {"packages": {"numpy": "2.1.0", "torch": "2.12.0", "rich": "13.7"}}
    b = {"packages": {"numpy": "2.1.0", "torch": "2.13.0", "wandb": "0.19.1", "rich": "13.7"}}
    assert environment.diff_packages([a, b]) == {
        "torch": ["2.12.0", "2.13.0"],
        "wandb": [None, "0.19.1"],
    }
    assert environment.diff_packages([a, None, a]) == {}
    assert environment.diff_packages([a, None, b])["torch"] == ["2.12.0", None, "2.13.0"]
