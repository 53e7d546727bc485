"""Integrity of the store's files: chunk headers named when damaged, fsck over every kind of
file, output paths never inside .coralx/, git's ref-name rules, dead writers' temp files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from coralx import Repository
from coralx.cli.main import cli
from coralx.errors import InvalidName, OutputInsideStore, StoreCorrupted
from coralx.experiments import ExperimentTracker
from coralx.store.base import base_cache


@pytest.fixture(autouse=True)
def _outside_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _chunk_files(repo: Repository) -> list[Path]:
    root = repo.path / "chunks"
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def _damage(path: Path, offset: int, flip: int = 0xFF) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= flip
    path.write_bytes(bytes(data))


def test_a_damaged_chunk_header_names_the_chunk_tensor_and_commit(repo: Repository) -> None:
    repo.stage_weights({"encoder.weight": np.arange(64, dtype=np.float32)})
    commit = repo.commit("one").commit_hash
    (chunk,) = _chunk_files(repo)
    _damage(chunk, 0)  # the magic
    chunk_id = chunk.parent.name + chunk.name
    base_cache.clear()  # as a new process reads it: from the file, not what the commit cached
    with pytest.raises(StoreCorrupted) as info:
        Repository.open(repo.root).get_all_weights(commit)
    text = str(info.value)
    assert chunk_id in text and "'encoder.weight'" in text and commit in text


@pytest.mark.parametrize("damage", ["flipped", "truncated"])
def test_a_damaged_large_chunk_file_is_refused_by_name(repo: Repository, damage: str) -> None:
    """Chunk files of MAP_MIN bytes or more are mapped to be decoded: a damaged or short one
    is refused with the chunk named, as a read one is."""
    from coralx.errors import ChecksumMismatch
    from coralx.store.disk import MAP_MIN

    rng = np.random.default_rng(5)
    weights = rng.standard_normal(1 << 18).astype(np.float32)  # 1 MiB, one chunk
    repo.stage_weights({"encoder.weight": weights})
    commit = repo.commit("one").commit_hash
    (chunk,) = _chunk_files(repo)
    assert chunk.stat().st_size >= MAP_MIN
    if damage == "flipped":
        _damage(chunk, chunk.stat().st_size // 2, 0x10)
    else:
        os.chmod(chunk, 0o644)
        os.truncate(chunk, chunk.stat().st_size * 3 // 4)
    base_cache.clear()
    with pytest.raises((ChecksumMismatch, StoreCorrupted)) as info:
        Repository.open(repo.root).get_all_weights(commit)
    assert chunk.parent.name + chunk.name in str(info.value)
    assert not Repository.open(repo.root).fsck().ok


def test_fsck_checks_records_journals_blobs_and_sweeps(repo: Repository) -> None:
    tracker = ExperimentTracker(repo)
    eid = tracker.start("r", params={"lr": 0.125}).experiment_id
    for i in range(50):
        tracker.log("loss", float(i), step=i)
    tracker.log_artifact("notes.txt", "some notes")
    tracker.end()
    assert repo.fsck().ok
    folder = repo.path / "experiments"
    record = folder / f"{eid}.json"
    record.write_text(record.read_text().replace("0.125", "0.135"))
    _damage(folder / f"{eid}.metrics", 30, 0x01)
    blob = next(p for p in (repo.path / "blobs").rglob("*") if p.is_file())
    _damage(blob, 0, 0x01)
    sweeps = repo.path / "sweeps"
    sweeps.mkdir(exist_ok=True)
    (sweeps / ("a" * 20 + ".json")).write_text('{"sweep_id": ')
    report = Repository.open(repo.root).fsck()
    assert not report.ok
    kinds = {(d["kind"], Path(d["file"]).name) for d in report.damaged_files}
    assert kinds == {
        ("record", f"{eid}.json"),
        ("journal", f"{eid}.metrics"),
        ("blob", blob.name),
        ("sweep", "a" * 20 + ".json"),
    }
    result = CliRunner().invoke(cli, ["-C", str(repo.root), "fsck"])
    assert result.exit_code == 3
    for _kind, name in kinds:
        assert name in result.output


def test_fsck_repair_restores_a_damaged_record_from_the_index(repo: Repository) -> None:
    tracker = ExperimentTracker(repo)
    eid = tracker.start("r", params={"lr": 0.125}).experiment_id
    tracker.log("loss", 1.0)
    tracker.end()
    tracker.list()  # indexed
    record = repo.path / "experiments" / f"{eid}.json"
    record.write_text(record.read_text()[:40])
    result = CliRunner().invoke(cli, ["-C", str(repo.root), "fsck", "--repair"])
    assert result.exit_code == 0, result.output
    got = ExperimentTracker(Repository.open(repo.root)).get(eid)
    assert got.params == {"lr": 0.125} and got.metrics_summary["loss"]["count"] == 1


# -- 3. output paths inside .coralx/ -----------------------------------------------------------


def test_checkout_into_the_store_is_refused(repo: Repository) -> None:
    repo.stage_weights({"w": np.ones(4, dtype=np.float32)})
    repo.commit("one")
    head_before = (repo.path / "HEAD").read_bytes()
    runner = CliRunner()
    for target in (".coralx/HEAD", ".coralx/x.safetensors", "link/HEAD"):
        if target.startswith("link"):
            (repo.root / "link").symlink_to(repo.path)
        result = runner.invoke(
            cli, ["-C", str(repo.root), "checkout", "HEAD", "-o", str(repo.root / target)]
        )
        assert result.exit_code == 2, result.output
        assert "inside the coralx store" in result.output
    assert (repo.path / "HEAD").read_bytes() == head_before
    assert runner.invoke(cli, ["-C", str(repo.root), "log"]).exit_code == 0
    with pytest.raises(OutputInsideStore):
        repo.export("HEAD", repo.path / "refs" / "x.safetensors")


def test_restore_code_into_the_store_is_refused(repo: Repository) -> None:
    tracker = ExperimentTracker(repo)
    eid = tracker.start("r").experiment_id
    tracker.end()
    with pytest.raises(OutputInsideStore, match="inside the coralx store"):
        tracker.restore_code(eid, repo.path / "code")


# -- 7. small things -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["@", "a.lock/b", "a//b", "a@{b", "-x", "a/.b", "a."])
def test_ref_names_git_refuses_are_refused(repo: Repository, name: str) -> None:
    repo.stage_weights({"w": np.ones(4, dtype=np.float32)})
    repo.commit("one")
    with pytest.raises(InvalidName):
        repo.tag(name)
    with pytest.raises(InvalidName):
        repo.create_branch(name)
    if name == "@":
        result = CliRunner().invoke(cli, ["-C", str(repo.root), "tag", "@"])
        assert result.exit_code == 2


def test_git_accepts_what_coralx_accepts(repo: Repository) -> None:
    git = subprocess.run(["git", "check-ref-format", "--branch", "a@b"], capture_output=True)
    assert git.returncode == 0
    repo.stage_weights({"w": np.ones(4, dtype=np.float32)})
    repo.commit("one")
    repo.tag("v1@best")


def test_a_newline_in_a_run_name_stays_in_its_row(repo: Repository) -> None:
    tracker = ExperimentTracker(repo)
    for i in range(5):
        tracker.start(f"run\n{i}\x1b[31m")
        tracker.end()
    result = CliRunner().invoke(cli, ["-C", str(repo.root), "exp", "list"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == 2 + 5 + 1  # header, rule, 5 runs, count
    assert "run\\n0\\x1b[31m" in result.output and "\x1b" not in result.output


KILLED_COMMIT = """
import os, sys
import numpy as np
from coralx import Repository
from coralx import _fs
repo = Repository.open(sys.argv[1])
real = _fs.fsync_path
calls = []
def die(path):
    if "chunks" in str(path):  # the chunk store's I/O threads fsync each temp file
        calls.append(path)
        if len(calls) >= 3:
            os._exit(9)  # the writer dies with its temp files written, none published
    real(path)
_fs.fsync_path = die
def die_at_syncfs(folder, own_bytes=0):  # the route on ext4, XFS, Btrfs, tmpfs
    os._exit(9)
_fs.sync_whole_fs = die_at_syncfs
rng = np.random.default_rng(0)
repo.stage_weights({f"w{i}": rng.standard_normal(300_000).astype("f4") for i in range(3)})
repo.commit("never")
"""


def test_dead_writers_temp_files_are_cleaned_at_the_next_commit(repo: Repository) -> None:
    child = subprocess.Popen([sys.executable, "-c", KILLED_COMMIT, str(repo.root)])
    assert child.wait(timeout=120) == 9
    temps = list((repo.path / "chunks").rglob(".tmp-*"))
    assert len(temps) >= 2, "the killed writer left too few temp files: the test tests nothing"
    assert all(f".{child.pid}." in p.name for p in temps)  # named with their writer's pid
    # A live writer's temp file (this process's pid) is never touched.
    mine = temps[0].with_name(temps[0].name.replace(f".{child.pid}.", f".{os.getpid()}."))
    temps[0].rename(mine)
    live = Repository.open(repo.root)
    live.stage_weights({"v": np.ones(8, dtype=np.float32)})
    live.commit("next")
    assert list((repo.path / "chunks").rglob(".tmp-*")) == [mine]


def test_check_output_path_follows_links_and_knows_a_store(
    repo: Repository, tmp_path: Path
) -> None:
    from coralx._fs import check_output_path

    (tmp_path / "into-refs").symlink_to(repo.path / "refs")
    for inside in (repo.path, repo.path / "x", tmp_path / "into-refs" / "heads" / "main"):
        with pytest.raises(OutputInsideStore):
            check_output_path(inside)  # found without being told the store
    plain = tmp_path / "elsewhere" / ".coralx"  # a folder by that name, not a store
    plain.mkdir(parents=True)
    assert check_output_path(plain / "out.safetensors") == plain / "out.safetensors"
    assert check_output_path("model.safetensors", repo.path) == Path("model.safetensors")
