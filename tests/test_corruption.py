"""One flipped byte in every kind of file the store holds: each is detected (by fsck naming the
file, or by the reader saying what is damaged), repaired where it is derived data, and never
turns into a traceback."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from coralx import Repository
from coralx.cli.main import cli
from coralx.experiments import ExperimentTracker


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with every kind of file: chunks (whole and delta), git objects and refs,
    records, a journal, a blob, a sweep record, the index."""
    root = tmp_path_factory.mktemp("pristine") / "project"
    old = os.getcwd()
    os.chdir(root.parent)
    try:
        repo = Repository.init(root)
        tracker = ExperimentTracker(repo)
        tracker.start("run", params={"lr": 0.125}, tags=["t"])
        for i in range(300):
            tracker.log("loss", 1.0 / (i + 1), step=i)
        tracker.log_artifact("notes.txt", "hello")
        base = np.random.default_rng(0).standard_normal(100_000).astype(np.float32)
        repo.stage_weights({"w": base})
        first = repo.commit("one").commit_hash
        tracker.end(commit_hash=first)
        repo.stage_weights({"w": base + np.float32(1e-3)})
        repo.commit("two")
        tracker.list()
        sweeps = repo.path / "sweeps"
        sweeps.mkdir(exist_ok=True)
        sid = "0" * 12 + "a" * 8
        (sweeps / f"{sid}.json").write_text(json.dumps({"sweep_id": sid, "runs": []}, indent=1))
    finally:
        os.chdir(old)
    return root


def _kinds(store: Path) -> dict[str, Callable[[], Path]]:
    def first(pattern: str, pick: Callable[[list[Path]], Path] = lambda p: p[0]) -> Path:
        found = sorted(p for p in store.glob(pattern) if p.is_file() and ".tmp-" not in p.name)
        assert found, pattern
        return pick(found)

    return {
        "chunk": lambda: first("chunks/*/*", lambda p: max(p, key=lambda f: f.stat().st_size)),
        "chunk header": lambda: first("chunks/*/*"),
        "record": lambda: first("experiments/*.json"),
        "journal": lambda: first("experiments/*.metrics"),
        "blob": lambda: first("blobs/*/*"),
        "sweep": lambda: first("sweeps/*.json"),
        "git object": lambda: first("objects/*/*"),
        "index": lambda: store / "index.sqlite",
    }


KINDS = list(_kinds(Path("x")))


def _flip(path: Path, kind: str) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    offset = {"chunk header": 1, "index": len(data) - 100}.get(kind, len(data) // 2)
    data[offset] ^= 0x20
    path.write_bytes(bytes(data))


def _cli(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-C", str(root), *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"coralx {' '.join(args)} raised {result.exception!r}")
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.mark.parametrize("kind", KINDS)
def test_one_flipped_byte_is_found_and_never_a_traceback(
    pristine: Path, tmp_path: Path, kind: str
) -> None:
    root = tmp_path / "project"
    shutil.copytree(pristine, root, symlinks=True)
    for wal in ("index.sqlite-wal", "index.sqlite-shm"):
        (root / ".coralx" / wal).unlink(missing_ok=True)
    target = _kinds(root / ".coralx")[kind]()
    _flip(target, kind)

    code, out = _cli(root, "fsck")
    if kind == "index":
        assert code == 0, out  # derived data: rebuilt from the records, nothing lost
    else:
        assert code == 3, out
        assert target.name in out  # the damaged file is named
    # Every reader answers, or says what is damaged (exit 3), never a traceback.
    for args in (("log",), ("exp", "list"), ("checkout", "HEAD", "-o", str(tmp_path / "o.st"))):
        code, out = _cli(root, *args)
        assert code in (0, 3, 4), (args, code, out)
    code, out = _cli(root, "exp", "list", "--json")
    assert code == 0 and ('"name": "run"' in out or kind == "record"), out


def test_each_damaged_git_object_is_named_by_fsck(pristine: Path, tmp_path: Path) -> None:
    """Commits, trees and manifests alike: wherever the damage, fsck names the object file."""
    objects = sorted(p.relative_to(pristine) for p in (pristine / ".coralx" / "objects").rglob("*"))
    objects = [p for p in objects if (pristine / p).is_file()]
    assert len(objects) >= 5
    for i, rel in enumerate(objects):
        root = tmp_path / f"copy{i}"
        shutil.copytree(pristine, root, symlinks=True)
        _flip(root / rel, "git object")
        code, out = _cli(root, "fsck")
        assert code == 3 and rel.name in out, (rel, out)
        for args in (("log",), ("exp", "list")):
            assert _cli(root, *args)[0] in (0, 3), (rel, args)
