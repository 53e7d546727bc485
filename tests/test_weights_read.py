"""Reading weights: every version bit-exact in one or two decodes, part of a commit, a revision
that must be given, and exports that never leave a partial file under their name."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file

from coralx import Repository
from coralx.cli.main import cli
from coralx.errors import ChunkNotFound, InvalidValue, TensorNotFound
from coralx.store import weights as engine
from coralx.store.base import base_cache
from coralx.store.codecs import CODEC_DELTA


def _model(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "encoder.layer.0.weight": rng.normal(0, 0.02, (300, 40)).astype(np.float32),
        "encoder.layer.0.bias": rng.normal(0, 0.02, 40).astype(np.float32),
        "encoder.layer.1.weight": rng.normal(0, 0.02, (300, 40)).astype(np.float32),
        "head.weight": rng.normal(0, 0.02, (40, 3)).astype(np.float32),
    }


def _step(weights: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """One training step: every element moves a little (as AdamW moves them)."""
    rng = np.random.default_rng(seed)
    return {n: (w + rng.normal(0, 1e-6, w.shape)).astype(w.dtype) for n, w in weights.items()}


def _commit(repo: Repository, weights: dict[str, np.ndarray], message: str = "m") -> str:
    repo.stage_weights(weights)
    return repo.commit(message).commit_hash


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return list(a) == list(b) and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes()
        for k in a
    )


def _decode_steps(repo: Repository, chunk: str) -> int:
    """How many encodings decoding a chunk goes through (1: whole, 2: a delta on a whole)."""
    return 1 + len(repo.weights.chunks.base_chain(chunk))


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(engine, "CHUNK_BYTES", 4096)
    return 4096


# -- the layout: any version in one or two decodes --------------------------------------------


def test_every_version_of_a_long_run_is_exact_in_at_most_two_decodes(
    repo: Repository, small_chunks: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "GROUP_LIMIT", 4)
    versions, commits = [], []
    weights = _model()
    for i in range(11):
        versions.append(weights)
        commits.append(_commit(repo, weights, f"v{i}"))
        weights = _step(weights, i + 1)
    store = repo.weights.chunks
    kinds = []
    for commit in commits:
        manifest = repo.weights.manifest(commit)
        assert manifest is not None
        for entry in manifest.tensors.values():
            assert all(_decode_steps(repo, c) <= 2 for c in entry.chunks)
        first = manifest.tensors["encoder.layer.0.weight"].chunks[0]
        kinds.append(store.read_header(first).codec == CODEC_DELTA)
    # a whole chunk starts each group of GROUP_LIMIT versions, the rest are deltas on it
    assert kinds == [False, True, True, True] * 2 + [False, True, True]
    base_cache.clear()  # decode from the files, not from what the commits cached
    for commit, expected in zip(commits, versions):
        assert _same(repo.get_all_weights(commit), expected)
    assert repo.fsck().ok
    # deltas make the history much smaller than whole versions
    assert repo.du().stored_bytes < 0.7 * sum(w.nbytes for v in versions for w in v.values())


def test_a_replaced_tensor_starts_a_new_group_rather_than_a_large_delta(
    repo: Repository, small_chunks: int
) -> None:
    first = _model(0)
    _commit(repo, first)
    other = _model(1)  # unrelated values of the same shapes: a delta would not pay
    second = _commit(repo, other)
    manifest = repo.weights.manifest(second)
    assert manifest is not None
    for entry in manifest.tensors.values():
        assert all(_decode_steps(repo, c) == 1 for c in entry.chunks)
    assert _same(repo.get_all_weights(second), other)


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, np.ndarray]]:
    dtype = draw(st.sampled_from([np.float32, np.float16, np.int32, np.uint8]))
    n = draw(st.integers(1, 700))
    count = draw(st.integers(1, 7))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    bits = np.dtype(dtype).itemsize * 8
    base = rng.integers(0, 2**bits, n, dtype=np.uint64).astype(f"<u{bits // 8}").view(dtype)
    out = []
    current = base.copy()
    for _ in range(count):
        flips = rng.random(n) < draw(st.sampled_from([0.0, 0.01, 0.5, 1.0]))
        raw = current.view(f"<u{bits // 8}").copy()
        raw[flips] += rng.integers(1, 9, int(flips.sum())).astype(raw.dtype)
        current = raw.view(dtype)
        out.append({"t": current.copy(), "fixed": base[:5].copy()})
    return out


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=histories())
def test_any_history_checks_out_bit_exact(
    tmp_path_factory: pytest.TempPathFactory, history: list[dict[str, np.ndarray]]
) -> None:
    repo = Repository(tmp_path_factory.mktemp("h") / "p", init=True)
    old = engine.CHUNK_BYTES
    engine.CHUNK_BYTES = 256
    try:
        commits = [_commit(repo, w) for w in history]
    finally:
        engine.CHUNK_BYTES = old
    base_cache.clear()
    for commit, expected in reversed(list(zip(commits, history))):
        assert _same(repo.get_all_weights(commit), expected)


# -- a revision must be given ----------------------------------------------------------------


def test_none_is_not_head(repo: Repository, tmp_path: Path) -> None:
    _commit(repo, _model())
    with pytest.raises(InvalidValue, match="HEAD"):
        repo.get_all_weights(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        repo.get_weight("head.weight", None)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        repo.export(None, tmp_path / "x.safetensors")  # type: ignore[arg-type]
    assert not (tmp_path / "x.safetensors").exists()
    assert _same(repo.get_all_weights(), _model())  # the default is HEAD, said explicitly


# -- part of a commit -------------------------------------------------------------------------


def test_names_selects_tensors_and_unknown_names_list_close_ones(repo: Repository) -> None:
    weights = _model()
    commit = _commit(repo, weights)
    part = repo.get_all_weights(commit, names=["head.weight", "encoder.layer.0.bias"])
    assert list(part) == ["encoder.layer.0.bias", "head.weight"]  # the commit's order
    assert _same(part, {k: weights[k] for k in part})
    with pytest.raises(TensorNotFound, match=r"encoder\.layer\.0\.bias") as info:
        repo.get_all_weights(commit, names=["encoder.layer.0.bia"])
    assert info.value.close[0] == "encoder.layer.0.bias"


def test_open_reads_metadata_without_decoding_and_tensors_on_access(repo: Repository) -> None:
    weights = _model()
    commit = _commit(repo, weights)
    manifest = repo.weights.manifest(commit)
    assert manifest is not None
    with repo.open(commit) as f:
        assert f.keys() == list(weights)
        assert len(f) == 4 and "head.weight" in f and "nope" not in f
        assert np.array_equal(f["head.weight"], weights["head.weight"])
        assert np.array_equal(f.get_tensor("encoder.layer.1.weight"),
                              weights["encoder.layer.1.weight"])  # fmt: skip
        with pytest.raises(TensorNotFound, match=r"close names: head\.weight"):
            f.shape("head.weigh")
    # with every chunk file gone, names, shapes and dtypes still answer: nothing is decoded
    base_cache.clear()
    shutil.rmtree(repo.path / "chunks")
    reader = repo.open(commit)
    assert reader.shape("encoder.layer.0.weight") == (300, 40)
    assert reader.dtype("encoder.layer.0.bias") == "F32"
    assert reader.nbytes("head.weight") == 40 * 3 * 4
    with pytest.raises(ChunkNotFound):
        reader["head.weight"]
    # the class attribute still opens a store
    assert Repository.open(repo.root).head_commit() == commit


def test_open_as_torch(repo: Repository) -> None:
    torch = pytest.importorskip("torch")
    weights = _model()
    commit = _commit(repo, weights)
    tensor = repo.weights.open(commit, framework="torch")["head.weight"]
    assert isinstance(tensor, torch.Tensor)
    assert tensor.numpy().tobytes() == weights["head.weight"].tobytes()


def test_export_only_and_the_cli(repo: Repository, tmp_path: Path, runner) -> None:
    weights = _model()
    commit = _commit(repo, weights)
    out = tmp_path / "part.safetensors"
    repo.export(commit, out, only=["encoder.layer.0.*"])
    got = load_file(str(out))
    assert sorted(got) == ["encoder.layer.0.bias", "encoder.layer.0.weight"]
    assert all(got[k].tobytes() == weights[k].tobytes() for k in got)
    with pytest.raises(TensorNotFound, match=r"no tensor matches 'decoder\.\*'"):
        repo.export(commit, tmp_path / "none.safetensors", only=["decoder.*"])
    assert not (tmp_path / "none.safetensors").exists()
    cli_out = tmp_path / "cli.safetensors"
    result = runner.invoke(
        cli, ["-C", str(repo.root), "export", commit[:10], "--only", "head.*", "-o", str(cli_out)]
    )
    assert result.exit_code == 0, result.output
    assert list(load_file(str(cli_out))) == ["head.weight"]
    result = runner.invoke(
        cli,
        [
            "-C",
            str(repo.root),
            "export",
            "HEAD",
            "--only",
            "encoder.layer.9.*",
            "-o",
            str(tmp_path / "n.safetensors"),
        ],
    )
    assert result.exit_code == 4 and "no tensor matches" in result.output


# -- interrupted checkouts --------------------------------------------------------------------

_SLOW_EXPORT = """
import sys, time
from coralx import Repository
repo = Repository(sys.argv[1])
def progress(n):
    print("writing", flush=True)
    time.sleep(0.5)
repo.export("HEAD", sys.argv[2], progress=progress)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_an_interrupted_export_leaves_nothing_under_the_name(
    repo: Repository, tmp_path: Path, small_chunks: int, sig: int
) -> None:
    _commit(repo, _model())
    dest = tmp_path / "out" / "model.safetensors"
    dest.parent.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with subprocess.Popen(
        [sys.executable, "-c", _SLOW_EXPORT, str(repo.root), str(dest)],
        stdout=subprocess.PIPE, env=env, text=True,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "writing"  # it is in the middle of the file
        time.sleep(0.2)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    assert proc.returncode != 0
    assert not dest.exists()
    leftovers = list(dest.parent.iterdir())
    if sig == signal.SIGINT:  # Ctrl-C: the temporary file is removed too
        assert leftovers == []
    else:  # kill -9 leaves only a temporary file, never one under the target's name
        assert all(p.name.startswith(".") and p.name != dest.name for p in leftovers)


def test_a_damaged_base_is_named_when_a_version_on_it_is_read(repo: Repository) -> None:
    from coralx.errors import ChecksumMismatch

    first = _model()
    c1 = _commit(repo, first)
    c2 = _commit(repo, _step(first, 1))
    base = repo.weights.manifest(c1).tensors["encoder.layer.0.weight"].chunks[0]  # type: ignore[union-attr]
    delta = repo.weights.manifest(c2).tensors["encoder.layer.0.weight"].chunks[0]  # type: ignore[union-attr]
    assert repo.weights.chunks.read_header(delta).base == base
    path = repo.weights.chunks.path(base)  # type: ignore[attr-defined]
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x40
    path.write_bytes(bytes(data))
    base_cache.clear()
    with pytest.raises(ChecksumMismatch) as info:
        repo.get_all_weights(c2)
    assert base in str(info.value)  # the damaged chunk, not the delta read through it
    report = repo.fsck()
    assert {d["chunk"] for d in report.damaged} == {base, delta}


def test_history_works_through_any_chunk_store(repo: Repository) -> None:
    """The weight history reaches chunks only through the ChunkStore interface."""
    from coralx.store.memory import MemoryChunkStore
    from coralx.weight_history import WeightHistory

    store = MemoryChunkStore()
    history = WeightHistory(repo, chunks=store)
    versions = [_model(), _step(_model(), 1), _step(_model(), 2)]
    commits = []
    for w in versions:
        history.stage_weights(w)
        commits.append(history.commit("m", links={}).commit_hash)
    assert len(store) > 0 and not any((repo.path / "chunks").iterdir())
    base_cache.clear()
    for commit, w in zip(commits, versions):
        assert _same(history.get_all_weights(commit), w)
    assert history.fsck().ok
    assert history.gc(prune_age=0).removed_chunks == 0
    assert store.another_handle() is store and store.prune_temp_files(0) == 0


def test_gc_prunes_only_old_temporary_chunk_files(repo: Repository) -> None:
    from coralx.store.disk import DiskChunkStore

    store = repo.weights.chunks
    assert isinstance(store, DiskChunkStore)
    folder = store.root / "ab"
    folder.mkdir(parents=True, exist_ok=True)
    old, young = folder / ".tmp-old.1.0", folder / ".tmp-young.1.0"
    old.write_bytes(b"left by a writer that died")
    young.write_bytes(b"being written now")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert store.prune_temp_files(3600, dry_run=True) == 1 and old.exists()
    assert repo.gc(prune_age=0).removed_temp_files == 1
    assert not old.exists() and young.exists()
    handle = store.another_handle()
    assert isinstance(handle, DiskChunkStore) and handle is not store and handle.root == store.root


def test_the_same_bytes_under_another_dtype_start_their_own_group(repo: Repository) -> None:
    """Chunk ids are content: zeros stored as int32 are the same chunk as float32 zeros. A
    float32 tensor following them must not become a delta made with the int32 map."""
    ints = np.random.default_rng(3).integers(0, 2**20, 5000, dtype=np.int32)
    _commit(repo, {"a": ints})  # stored with an I32 header
    same = ints.view(np.float32)  # the same bytes as float32 (small subnormals)
    c2 = _commit(repo, {"t": same})  # the same chunk, deduplicated
    (chunk,) = repo.weights.manifest(c2).tensors["t"].chunks  # type: ignore[union-attr]
    assert repo.weights.chunks.read_header(chunk).dtype == "I32"
    versions = []
    for i in range(1, 4):
        bits = ints.copy()
        bits[:: i + 1] += i  # a few ulps: a small delta, well worth storing as one
        versions.append((_commit(repo, {"t": bits.view(np.float32)}), bits.view(np.float32)))
    base_cache.clear()
    for commit, expected in versions:
        assert repo.get_weight("t", commit).tobytes() == expected.tobytes()
    assert repo.fsck().ok


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_large_checkout_is_private_memory_that_outlives_its_siblings(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A large checkout lives in an anonymous mapping of its own (not numpy's allocation,
    # which asks for huge pages): it must behave as numpy memory does. It is writable,
    # aligned and bit-exact. It stays valid while any one of its arrays is held. And it is
    # private: a forked child (a DataLoader worker) writing to it changes nothing in the
    # parent. (The threshold is lowered here: a test does not need 256 MiB to check this.)
    monkeypatch.setattr(engine, "SLAB_MAP_MIN", 1 << 20)
    rng = np.random.default_rng(5)
    weights = {"big": rng.standard_normal(600_000).astype(np.float32), "small": np.ones(3)}
    repo.stage_weights(weights)
    repo.commit("large")
    out = repo.get_all_weights("HEAD")
    assert out["big"].nbytes >= engine.SLAB_MAP_MIN
    owner = out["big"]
    while isinstance(owner, np.ndarray):
        owner = owner.base
    assert isinstance(owner, memoryview)  # the mapping, not a numpy allocation
    assert out["big"].ctypes.data % 64 == 0 and out["big"].flags.writeable
    assert out["big"].tobytes() == weights["big"].tobytes()
    big = out.pop("big")
    del out
    big[:4] = 7.0  # still mapped, still ours
    pid = os.fork()
    if pid == 0:  # the child scribbles over its copy and leaves
        big[:] = -1.0
        os._exit(0)
    os.waitpid(pid, 0)
    assert big[:4].tolist() == [7.0] * 4
    assert big[4:].tobytes() == weights["big"][4:].tobytes()
