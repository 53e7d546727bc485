"""Re-encoding replaced chunks behind the commit: results, failures, and a kill -9 mid-way."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from coralx import Repository
from coralx.store.codecs import CODEC_DELTA
from coralx.store.compaction import Compactor
from coralx.store.disk import DiskChunkStore
from coralx.store.memory import MemoryChunkStore
from coralx.store.tensors import dtype_by_name
from coralx.store.weights import DeltaJob, rewrite_as_delta

F32 = dtype_by_name("F32")


def _pair(seed: int = 0, n: int = 50_000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    old = rng.normal(0, 0.02, n).astype(np.float32)
    new = old + rng.normal(0, 2e-6, n).astype(np.float32)
    return old.view(np.uint8), new.view(np.uint8)


def test_rewrite_as_delta_stores_the_old_version_as_a_smaller_delta() -> None:
    store = MemoryChunkStore()
    old, new = _pair()
    old_id, _ = store.put(old, F32)
    new_id, _ = store.put(new, F32)
    before = store.encoded_size(old_id)
    saved = rewrite_as_delta(store, DeltaJob(old_id, new_id))
    assert saved > 0 and store.encoded_size(old_id) == before - saved
    assert store.read_header(old_id).base == new_id
    assert store.get(old_id).tobytes() == old.tobytes()


def test_rewrite_as_delta_never_makes_a_cycle_and_skips_gone_chunks() -> None:
    store = MemoryChunkStore()
    old, new = _pair()
    old_id, _ = store.put(old, F32)
    new_id, _ = store.put(new, F32)
    assert rewrite_as_delta(store, DeltaJob(old_id, new_id)) > 0
    # the other way round would make each a delta of the other: nothing could be decoded
    assert rewrite_as_delta(store, DeltaJob(new_id, old_id)) == 0
    assert store.read_header(new_id).codec != CODEC_DELTA
    assert store.get(new_id).tobytes() == new.tobytes()
    store.delete(old_id)
    assert rewrite_as_delta(store, DeltaJob(old_id, new_id)) == 0


def test_a_damaged_chunk_is_left_alone_and_reported(tmp_path: Path) -> None:
    store = DiskChunkStore(tmp_path / "chunks")
    old, new = _pair()
    old_id, _ = store.put(old, F32)
    new_id, _ = store.put(new, F32)
    path = store.path(old_id)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    compactor = Compactor(DiskChunkStore(tmp_path / "chunks"), contextlib.nullcontext)
    compactor.submit([DeltaJob(old_id, new_id)])
    compactor.wait()
    assert compactor.stats.jobs == 1 and compactor.stats.saved_bytes == 0
    assert any(old_id in e for e in compactor.stats.errors)
    assert path.read_bytes() == bytes(data)  # not replaced by anything


def test_commits_are_complete_before_and_smaller_after_compaction(repo: Repository) -> None:
    old, new = _pair()
    repo.stage_weights({"w": old.view(np.float32)})
    first = repo.commit("one").commit_hash
    repo.stage_weights({"w": new.view(np.float32)})
    second = repo.commit("two").commit_hash
    # whatever the background thread has done so far, both versions read back exactly
    assert repo.get_weight("w", first).tobytes() == old.tobytes()
    assert repo.get_weight("w", second).tobytes() == new.tobytes()
    stats = repo.wait_for_compaction()
    assert stats.jobs == 1 and stats.saved_bytes > 0 and not stats.errors
    old_chunk = repo.weights.manifest(first).tensors["w"].chunks[0]
    assert repo.weights.chunks.read_header(old_chunk).codec == CODEC_DELTA
    assert repo.get_weight("w", first).tobytes() == old.tobytes()
    assert repo.fsck().ok


_KILLED_WRITER = """
import os, signal, sys, time
import numpy as np
from coralx import Repository
repo = Repository(sys.argv[1])
delay = float(sys.argv[2])
rng = np.random.default_rng(0)
w = rng.normal(0, 0.02, (6, 600_000)).astype(np.float32)   # several chunks per version
for step in range(3):
    w = w + rng.normal(0, 2e-6, w.shape).astype(np.float32)
    np.save(f"{sys.argv[1]}/v{step}.npy", w)
    repo.stage_weights({"w": w})
    print(repo.commit(f"step {step}").commit_hash, flush=True)
time.sleep(delay)
os.kill(os.getpid(), signal.SIGKILL)   # in the middle of the re-encoding behind the commit
"""


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.1])
def test_kill_9_during_compaction_leaves_every_version_readable(
    tmp_path: Path, delay: float
) -> None:
    Repository.init(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path), str(delay)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == -9, out.stderr
    commits = out.stdout.split()
    assert len(commits) == 3
    repo = Repository(tmp_path)
    assert repo.fsck().ok
    for step, commit in enumerate(commits):
        expected = np.load(tmp_path / f"v{step}.npy")
        assert repo.get_weight("w", commit).tobytes() == expected.tobytes()


_EXITING_WRITER = """
import sys
import numpy as np
from coralx import Repository
repo = Repository(sys.argv[1])
rng = np.random.default_rng(0)
w = rng.normal(0, 0.02, (4, 300_000)).astype(np.float32)
for step in range(2):
    w = w + rng.normal(0, 2e-6, w.shape).astype(np.float32)
    repo.stage_weights({"w": w})
    print(repo.commit(f"step {step}").commit_hash, flush=True)
"""  # exits right after the last commit, without waiting for the compaction


def test_a_process_finishes_its_compaction_before_it_exits(tmp_path: Path) -> None:
    Repository.init(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", _EXITING_WRITER, str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert not out.stderr
    first, second = out.stdout.split()
    repo = Repository(tmp_path)
    store = repo.weights.chunks
    old = repo.weights.manifest(first).tensors["w"].chunks
    new = repo.weights.manifest(second).tensors["w"].chunks
    assert [store.read_header(c).base for c in old] == new
    assert repo.fsck().ok
