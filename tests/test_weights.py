"""The weight API of a repository: stage, commit, check out, compare, clean and check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coralx import Repository
from coralx.errors import (
    AmbiguousRevision,
    ChecksumMismatch,
    InvalidName,
    InvalidValue,
    RevisionNotFound,
    TensorNotFound,
)
from coralx.store import weights as engine
from coralx.store.base import base_cache
from coralx.store.codecs import CODEC_DELTA
from coralx.store.tensors import DTYPES


def _weights(seed: int = 0, n: int = 3000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "encoder.weight": rng.normal(0, 0.02, (n, 10)).astype(np.float32),
        "encoder.bias": rng.normal(0, 0.02, 10).astype(np.float32),
        "step": np.array(seed, dtype=np.int64),
    }


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes()
        for k in a
    )


def _commit(repo: Repository, weights: dict[str, np.ndarray], message: str = "m") -> str:
    repo.stage_weights(weights)
    return repo.commit(message).commit_hash


def test_seed_api_round_trip(repo: Repository) -> None:
    weights = _weights()
    repo.stage_weights(weights)
    commit = repo.commit("Training complete")
    assert len(commit.commit_hash) == 40
    assert commit.message == "Training complete"
    assert commit.author == "Test Author <test@example.com>"
    assert commit.timestamp.tzinfo is not None
    assert len(commit.parents) == 1
    assert _same(repo.get_all_weights(commit.commit_hash), weights)
    assert repo.get_weight("encoder.bias").tobytes() == weights["encoder.bias"].tobytes()
    assert commit.to_dict()["commit_hash"] == commit.commit_hash


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Chunks of 64 bytes, so small tensors cross chunk boundaries."""
    monkeypatch.setattr(engine, "CHUNK_BYTES", 64)
    return 64


@st.composite
def tensors(draw: st.DrawFn) -> np.ndarray:
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(st.sampled_from([(), (0,), (1,), (3, 0), (7,), (16,), (17,), (2, 33), (65,)]))
    n = int(np.prod(shape)) * dtype.itemsize
    raw = draw(st.binary(min_size=n, max_size=n))
    return np.frombuffer(raw, np.uint8).copy().view(dtype.numpy).reshape(shape)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.dictionaries(
        st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=8).filter(
            lambda s: "\x00" not in s and s != "__metadata__"
        ),
        tensors(),
        min_size=1,
        max_size=4,
    )
)
def test_every_dtype_round_trips_bit_exact(
    tmp_path_factory: pytest.TempPathFactory, small_chunks: int, weights: dict[str, np.ndarray]
) -> None:
    repo = Repository.init(tmp_path_factory.mktemp("p"))
    first = _commit(repo, weights)
    # a second version of each tensor (bits flipped) makes the first one a delta
    flipped = {
        k: (v.reshape(-1).view(np.uint8) ^ np.uint8(1)).view(v.dtype).reshape(v.shape)
        for k, v in weights.items()
    }
    second = _commit(repo, flipped)
    assert _same(repo.get_all_weights(first), weights)
    assert _same(repo.get_all_weights(second), flipped)
    assert repo.fsck().ok


def test_special_float_values_survive(repo: Repository, small_chunks: int) -> None:
    import ml_dtypes

    values = np.array(
        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 3.4e38, -3.4e38, 1.0], np.float32
    )
    small = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 6e-8, -6e-8, 1.0], np.float32)
    payload_nan = np.array([0x7FC00123, 0xFF800001, 0x00000001], np.uint32).view(np.float32)
    weights = {
        "f32": np.concatenate([values, payload_nan]),
        "f16": small.astype(np.float16),
        "bf16": values.astype(ml_dtypes.bfloat16),
        "f64": values.astype(np.float64),
        "f8": small.astype(ml_dtypes.float8_e5m2),
        "bool": np.array([True, False, True]),
        "i64": np.array([np.iinfo(np.int64).min, -1, 0, np.iinfo(np.int64).max]),
        "u64": np.array([0, np.iinfo(np.uint64).max], np.uint64),
    }
    commit = _commit(repo, weights)
    assert _same(repo.get_all_weights(commit), weights)


def test_same_weights_twice_add_no_chunk(repo: Repository) -> None:
    weights = _weights()
    _commit(repo, weights)
    before = sorted(repo.weights.chunks.iter_ids())
    second = _commit(repo, {k: v.copy() for k, v in weights.items()}, "again")
    assert sorted(repo.weights.chunks.iter_ids()) == before
    assert _same(repo.get_all_weights(second), weights)
    du = repo.du()
    assert du.dedup_ratio == pytest.approx(2.0, rel=0.01)


def test_small_chunks_go_to_the_pool_together(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A model's many small tensors (biases, norms) go to the worker threads in batches; a
    # large chunk goes alone. Every tensor still lands in its own place, bit for bit.
    monkeypatch.setattr(engine, "BATCH_BYTES", 64 << 10)
    rng = np.random.default_rng(3)
    weights: dict[str, np.ndarray] = {}
    for i in range(40):
        weights[f"layer{i}.bias"] = rng.normal(0, 0.02, 300 + i).astype(np.float32)
        if i % 10 == 0:
            weights[f"layer{i}.weight"] = rng.normal(0, 0.02, (200, 100)).astype(np.float32)
    submitted: list[object] = []
    real_bounded = engine._bounded

    def counting(tasks, window):  # type: ignore[no-untyped-def]
        tasks = list(tasks)
        submitted.append(len(tasks))
        return real_bounded(tasks, window)

    monkeypatch.setattr(engine, "_bounded", counting)
    first = _commit(repo, weights)
    shifted = {k: v + np.float32(1e-3) for k, v in weights.items()}
    second = _commit(repo, shifted, "second")
    base_cache.clear()
    assert _same(repo.get_all_weights(first), weights)
    assert _same(repo.get_all_weights(second), shifted)
    chunks = sum(len(e.chunks) for e in repo.weights.manifest(second).tensors.values())
    # 44 chunks: four large ones alone, the 40 small ones in a few batches of 64 KiB
    assert chunks == 44
    assert submitted and all(4 < n < 20 for n in submitted), submitted


def test_small_noise_step_stores_the_new_version_as_a_delta(repo: Repository) -> None:
    old = _weights(n=20000)
    first = _commit(repo, old)
    rng = np.random.default_rng(5)
    new = dict(old)
    new["encoder.weight"] = old["encoder.weight"] + rng.normal(0, 2e-6, (20000, 10)).astype(
        np.float32
    )
    size_before = repo.du().stored_bytes
    second = _commit(repo, new)
    store = repo.weights.chunks
    old_chunk = repo.weights.manifest(first).tensors["encoder.weight"].chunks[0]
    new_chunk = repo.weights.manifest(second).tensors["encoder.weight"].chunks[0]
    head = store.read_header(new_chunk)
    assert head.codec == CODEC_DELTA and head.base == old_chunk and head.chain == 1
    assert store.read_header(old_chunk).codec != CODEC_DELTA  # the group's base stays whole
    assert repo.du().stored_bytes < 1.6 * size_before  # the step cost far less than a copy
    assert _same(repo.get_all_weights(first), old)
    assert _same(repo.get_all_weights(second), new)


def test_delta_groups_stay_bounded(repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "GROUP_LIMIT", 3)
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.02, 5000).astype(np.float32)
    commits = []
    for _ in range(7):
        w = w + rng.normal(0, 2e-6, w.size).astype(np.float32)
        commits.append((_commit(repo, {"w": w}), w.copy()))
    store = repo.weights.chunks
    wholes = 0
    for commit, expected in commits:
        chunk = repo.weights.manifest(commit).tensors["w"].chunks[0]
        assert len(store.base_chain(chunk)) <= 1
        wholes += not store.base_chain(chunk)
        assert repo.get_weight("w", commit).tobytes() == expected.tobytes()
    assert wholes == 3  # versions 1, 4 and 7 start the groups of three


@pytest.mark.parametrize("limit", [3, 16])
def test_groups_found_from_memory_match_the_stored_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    # A committing process remembers the group of every chunk it wrote, so the next commit
    # reads no header from storage; the layout must be the one the headers give.
    monkeypatch.setattr(engine, "GROUP_LIMIT", limit)
    rng = np.random.default_rng(1)
    versions = []
    w = rng.normal(0, 0.02, 5000).astype(np.float32)
    for _ in range(8):
        w = w + rng.normal(0, 2e-6, w.size).astype(np.float32)
        versions.append({"w": w.copy(), "b": w[:50].astype(np.float16)})

    def layout(repo: Repository) -> list[tuple[int, int, str | None]]:
        store = repo.weights.chunks
        out = []
        for commit in commits_of(repo):
            for entry in repo.weights.manifest(commit).tensors.values():
                for cid in entry.chunks:
                    head = store.read_header(cid)
                    out.append((head.codec, head.chain, head.base))
        return out

    def commits_of(repo: Repository) -> list[str]:
        return [repo.resolve(f"HEAD~{i}") for i in range(len(versions))]

    remembered = Repository.init(tmp_path / "remembered")
    reads: list[str] = []
    real = type(remembered.weights.chunks).read_header

    def counting(self, chunk_id):  # type: ignore[no-untyped-def]
        if sys._getframe(1).f_code.co_name == "_group_base":  # not a base being decoded
            reads.append(chunk_id)
        return real(self, chunk_id)

    monkeypatch.setattr(type(remembered.weights.chunks), "read_header", counting)
    for v in versions:
        _commit(remembered, v)
    assert reads == []  # every chunk's group came from memory
    monkeypatch.undo()
    monkeypatch.setattr(engine, "GROUP_LIMIT", limit)
    # The same commits, each by a fresh Repository (nothing remembered): headers are read.
    fresh_root = tmp_path / "fresh"
    Repository.init(fresh_root)
    for v in versions:
        _commit(Repository(fresh_root), v)
    fresh = Repository(fresh_root)
    assert layout(remembered) == layout(fresh)
    assert any(codec == CODEC_DELTA for codec, _chain, _base in layout(fresh))
    for i, v in enumerate(reversed(versions)):
        assert _same(remembered.get_all_weights(f"HEAD~{i}"), v)


def test_remembered_groups_are_bounded_oldest_first(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coralx.store.tensors import dtype_by_name

    groups = engine._Groups()
    monkeypatch.setattr(engine._Groups, "LIMIT", 3)
    store, f32 = repo.weights.chunks, dtype_by_name("F32")
    for i in range(5):
        groups.note(store, f"{i:064x}", (f"{i:064x}", 0, 100), 16, f32)
    assert [groups.get(store, f"{i:064x}", 16, f32) is not None for i in range(5)] == [
        False, False, True, True, True,
    ]  # fmt: skip
    assert groups.get(store, f"{4:064x}", 32, f32) is None  # another length: not the same


def test_reopen_in_a_new_process(repo: Repository) -> None:
    weights = _weights()
    commit = _commit(repo, weights)
    np.savez(repo.root / "expected.npz", **weights)
    code = (
        "import sys, numpy as np\n"
        "from coralx import Repository\n"
        "repo = Repository(sys.argv[1])\n"
        "got = repo.get_all_weights(sys.argv[2])\n"
        "exp = np.load(sys.argv[1] + '/expected.npz')\n"
        "assert all(got[k].tobytes() == exp[k].tobytes() for k in exp.files)\n"
        "print(repo.log(limit=1)[0].commit_hash)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(repo.root), commit[:8]],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == commit


_COMMITTER = """
import sys, numpy as np
from coralx import Repository
repo = Repository(sys.argv[1])
for i in range(int(sys.argv[3])):
    repo.stage_weights({"w": np.full(100, int(sys.argv[2]) * 1000 + i, np.float32)})
    repo.commit(f"worker {sys.argv[2]} commit {i}")
"""


def test_four_processes_committing_to_one_branch_lose_nothing(repo: Repository) -> None:
    per = 5
    procs = [
        subprocess.Popen([sys.executable, "-c", _COMMITTER, str(repo.root), str(k), str(per)])
        for k in range(4)
    ]
    assert all(p.wait(timeout=240) == 0 for p in procs)
    history = repo.log("main")
    messages = {c.message for c in history}
    expected = {f"worker {k} commit {i}" for k in range(4) for i in range(per)}
    assert expected <= messages
    assert len(history) == 4 * per + 1  # one line of history: every commit on top of another
    assert all(len(c.parents) <= 1 for c in history)
    assert repo.fsck().ok


def test_gc_keeps_reachable_and_drops_the_rest(repo: Repository) -> None:
    kept = _commit(repo, _weights(1))
    repo.create_branch("doomed")
    repo.checkout("doomed")
    doomed = _commit(repo, _weights(2))
    repo.checkout("main")
    # an experiment record that names a commit keeps it
    record = repo.weights.manifest(doomed)
    assert record is not None
    # drop the branch: its commit is now unreachable
    repo.git.refs.remove_if_equals(b"refs/heads/doomed", None)
    doomed_chunks = (
        repo.weights.manifest(doomed).chunk_ids() - repo.weights.manifest(kept).chunk_ids()
    )
    report = repo.gc(prune_age=3600)
    assert report.removed_chunks == 0  # too recent: a writer may be about to use them
    report = repo.gc(prune_age=0)
    assert report.removed_chunks == len(doomed_chunks) > 0
    assert not any(repo.weights.chunks.has(c) for c in doomed_chunks)
    assert _same(repo.get_all_weights(kept), _weights(1))
    assert repo.fsck().ok


def test_gc_keeps_commits_named_by_experiment_records(repo: Repository) -> None:
    first = _commit(repo, _weights(1))
    _commit(repo, _weights(2))
    # rewind main so `first`'s child is unreachable except through a record
    second = repo.resolve("HEAD")
    repo.git.refs[b"refs/heads/main"] = repo.resolve("HEAD~2").encode()
    exp_id = "0123456789abcdef0123"
    (repo.path / "experiments" / f"{exp_id}.json").write_text(
        json.dumps(
            {"experiment_id": exp_id, "commit_hash": None, "weight_commits": [first, second]}
        )
    )
    repo.gc(prune_age=0)
    assert _same(repo.get_all_weights(second), _weights(2))
    assert repo.resolve(exp_id) == second
    assert repo.resolve(exp_id[:12]) == second


def test_gc_never_drops_staged_chunks(repo: Repository) -> None:
    _commit(repo, _weights(1))
    repo.stage_weights(_weights(7))
    other = Repository(repo.root)
    # a chunk file another process is writing right now (its temporary file)
    writing = repo.weights.chunks.root / "ab" / ".tmp-cd.12345.0000"
    writing.parent.mkdir(exist_ok=True)
    writing.write_bytes(b"half a chunk")
    other.gc(prune_age=0)  # another process collects while this one has staged
    assert writing.exists()
    commit = repo.commit("after gc")
    assert _same(repo.get_all_weights(commit.commit_hash), _weights(7))


def test_fsck_finds_one_flipped_byte(repo: Repository) -> None:
    commit = _commit(repo, _weights(3))
    assert repo.fsck().ok
    chunk = repo.weights.manifest(commit).tensors["encoder.weight"].chunks[0]
    path = repo.weights.chunks.path(chunk)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    report = repo.fsck()
    assert not report.ok
    (bad,) = report.damaged
    assert bad["chunk"] == chunk
    assert [commit, "encoder.weight"] in bad["uses"]
    # as in a new process: this one holds the chunk, verified, among its decoded delta bases
    base_cache.clear()
    fresh = Repository(repo.root)
    with pytest.raises(ChecksumMismatch) as info:
        fresh.get_all_weights(commit)
    assert "encoder.weight" in str(info.value) and commit in str(info.value)


def test_bad_input_is_refused_and_stores_nothing(repo: Repository) -> None:
    head = repo.resolve("HEAD")
    good = np.zeros(3, np.float32)
    for bad in (
        {"w": [1.0, 2.0]},
        {"w": np.array([object()])},
        {"": good},
        {"w": good, "v": "text"},
        {"w": np.array(["a", "b"])},
        {"\ud800": good},
        {"\x00": good},
    ):
        with pytest.raises((InvalidValue, InvalidName)):
            repo.stage_weights(bad)
    with pytest.raises(InvalidValue):
        repo.stage_weights([("w", good)])  # type: ignore[arg-type]
    assert list(repo.weights.chunks.iter_ids()) == []
    with pytest.raises(InvalidValue):
        repo.commit("nothing staged")
    repo.stage_weights({"w": good})
    with pytest.raises(InvalidValue):
        repo.commit("")
    assert repo.resolve("HEAD") == head


def test_resolve_forms(repo: Repository) -> None:
    a = _commit(repo, _weights(1))
    b = _commit(repo, _weights(2))
    repo.tag("v1", a)
    repo.tag("v2", b, message="annotated")
    assert repo.resolve("HEAD") == b
    assert repo.resolve("main") == b
    assert repo.resolve("HEAD~1") == a == repo.resolve("main^") == repo.resolve("v1")
    assert repo.resolve("v2") == b
    assert repo.resolve(a[:7]) == a
    assert repo.resolve(a.upper()) == a
    for bad in ("nope", "HEAD~99", "", "zzzz", "../../x"):
        with pytest.raises(RevisionNotFound):
            repo.resolve(bad)
    with pytest.raises(TensorNotFound):
        repo.get_weight("missing")


def test_ambiguous_prefix_commit_and_experiment(repo: Repository) -> None:
    commit = _commit(repo, _weights(1))
    exp_id = commit[:20]  # an experiment whose id shares the commit's first digits
    (repo.path / "experiments" / f"{exp_id}.json").write_text(json.dumps({"commit_hash": commit}))
    with pytest.raises(AmbiguousRevision):
        repo.resolve(commit[:8])
    assert repo.resolve(commit) == commit


def test_experiment_without_weight_commit_is_not_found(repo: Repository) -> None:
    exp_id = "abcdef0123456789abcd"
    (repo.path / "experiments" / f"{exp_id}.json").write_text(
        json.dumps({"commit_hash": None, "weight_commits": []})
    )
    with pytest.raises(RevisionNotFound):
        repo.resolve(exp_id)


def test_branches_checkout_and_detached_commits(repo: Repository) -> None:
    a = _commit(repo, _weights(1))
    repo.create_branch("exp", a)
    with pytest.raises(InvalidName):
        repo.create_branch("exp")
    with pytest.raises(InvalidName):
        repo.create_branch("bad..name")
    repo.checkout("exp")
    assert repo.current_branch() == "exp"
    b = _commit(repo, _weights(2))
    assert repo.resolve("exp") == b and repo.resolve("main") == a
    assert {br.name: br.current for br in repo.branches()} == {"exp": True, "main": False}
    repo.checkout(a)
    assert repo.current_branch() is None
    c = _commit(repo, _weights(3))  # a detached commit moves HEAD only
    assert repo.resolve("HEAD") == c and repo.resolve("exp") == b
    other = repo.commit_on_branch = None  # noqa: F841 - plain attribute, no effect
    repo.stage_weights(_weights(4))
    d = repo.commit("to a new branch", branch="side").commit_hash
    assert repo.resolve("side") == d and repo.log("side", limit=2)[1].commit_hash == c
    with pytest.raises(InvalidName):
        repo.tag("v1", a) and repo.tag("v1", b)


def test_commit_links_context_and_listeners(repo: Repository) -> None:
    seen = []
    repo.commit_listeners.append(seen.append)
    repo.commit_context = {"experiment_id": "0123456789abcdef0123", "code_branch": "main"}
    repo.stage_weights(_weights())
    commit = repo.commit("linked", code_commit="a" * 40)
    assert seen == [commit]
    assert commit.experiment_id == "0123456789abcdef0123"
    assert commit.code_branch == "main" and commit.code_commit == "a" * 40
    # A commit linked to a run goes on the run's own line; the branch does not move.
    again = repo.log(run="0123456789abcdef0123", limit=1)[0]
    assert again == commit
    assert repo.log(limit=1)[0] != commit
    assert again.message == "linked"
    with pytest.raises(InvalidValue):
        repo.stage_weights(_weights())
        repo.commit("x", code_branch="two\nlines")


def test_diff_reports_changes(repo: Repository) -> None:
    a = _weights(1)
    b = dict(a)
    b["encoder.bias"] = a["encoder.bias"] + np.float32(0.5)
    b["new"] = np.zeros(2, np.float32)
    del b["step"]
    ca, cb = _commit(repo, a), _commit(repo, b)
    diff = repo.diff(ca, cb)
    assert diff.added == ["new"] and diff.removed == ["step"]
    assert diff.unchanged == ["encoder.weight"]
    (change,) = diff.changed
    assert change.name == "encoder.bias"
    assert change.max_abs_change == pytest.approx(0.5, rel=1e-3)
    assert change.fraction_changed == 1.0
    assert change.l2_change == pytest.approx(0.5 * np.sqrt(10), rel=1e-3)


def test_export_streams_a_safetensors_file(repo: Repository, small_chunks: int) -> None:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    weights = _weights(4, n=50)
    commit = _commit(repo, weights)
    out = repo.root / "model.safetensors"
    info = repo.export("HEAD", out)
    assert info["commit"] == commit
    loaded = load_file(str(out))
    assert _same(loaded, weights)
    with safe_open(str(out), "np") as f:
        assert f.metadata()["coralx_commit"] == commit
    # and back in: add_file stages the same tensors (deduplicated)
    before = set(repo.weights.chunks.iter_ids())
    repo.add_file(out)
    again = repo.commit("re-imported").commit_hash
    assert set(repo.weights.chunks.iter_ids()) == before
    assert _same(repo.get_all_weights(again), weights)


def test_add_file_npz_and_refusals(repo: Repository, tmp_path: Path) -> None:
    weights = _weights(5)
    np.savez(tmp_path / "w.npz", **weights)
    repo.add_file(tmp_path / "w.npz")
    commit = repo.commit("from npz").commit_hash
    assert _same(repo.get_all_weights(commit), weights)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object))
    for bad in ("obj.npz", "obj.npy", "missing.safetensors"):
        with pytest.raises(InvalidValue):
            repo.add_file(tmp_path / bad)
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 20)
    with pytest.raises(InvalidValue):
        repo.add_file(tmp_path / "junk.safetensors")


def test_torch_tensors_in_and_out(repo: Repository) -> None:
    torch = pytest.importorskip("torch")
    state = {
        "w": torch.randn(64, 3, dtype=torch.bfloat16),
        "b": torch.randn(3),
        "i": torch.arange(5),
        "f8": torch.randn(4).to(torch.float8_e4m3fn),
    }
    repo.stage_weights(state)
    commit = repo.commit("torch").commit_hash
    back = repo.get_all_weights(commit, framework="torch")
    for name, tensor in state.items():
        assert back[name].dtype == tensor.dtype
        assert torch.equal(back[name].view(torch.uint8), tensor.view(torch.uint8))
    assert repo.get_weight("w", framework="torch").dtype == torch.bfloat16


def test_a_forked_child_can_commit(repo: Repository) -> None:
    _commit(repo, _weights(1))  # the parent's worker pool now exists
    pid = os.fork()
    if pid == 0:  # the child: its inherited pool has no threads
        code = 1
        try:
            child = Repository(repo.root)
            child.stage_weights({"from_child": np.ones(10, np.float32)})
            child.commit("from a forked child", branch="child")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert repo.get_weight("from_child", "child").tolist() == [1.0] * 10
