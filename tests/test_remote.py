"""Remotes: two stores on one machine exchange everything through a folder remote and a real
S3 server (tests/s3_server.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from coralx import Repository, graph
from coralx.cli.main import cli
from coralx.errors import ConcurrentUpdate, PushRejected, RemoteCorrupted, RemoteError
from coralx.experiments import ExperimentTracker
from coralx.remote.sync import _TransportRefs
from coralx.remote.transport import S3Transport
from coralx.store import kernels

from .s3_server import S3Server


def _w(seed: int, step: int = 0, n: int = 50_000) -> dict[str, np.ndarray]:
    base = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
    return {"layer.weight": base + np.float32(step * 1e-3), "layer.bias": np.full(8, seed, "f4")}


def _train(repo: Repository, name: str, seed: int, steps: int = 3) -> str:
    tracker = ExperimentTracker(repo)
    with tracker.start(name, params={"seed": seed}) as exp:
        for step in range(steps):
            tracker.log("loss", 1.0 / (step + 1 + seed), step=step)
            repo.stage_weights(_w(seed, step))
            repo.commit(f"{name} step {step}")
        tracker.log_artifact("notes.txt", f"notes of {name}")
    return exp.experiment_id


@pytest.fixture(params=["folder", "s3"])
def remote_url(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    if request.param == "folder":
        return str(tmp_path / "shared.coralx"), None
    server: S3Server = request.getfixturevalue("s3")
    return f"s3://{server.make_bucket()}/projects/bert", server.endpoint


def _store(tmp_path: Path, name: str, url: str, endpoint: str | None) -> Repository:
    repo = Repository.init(tmp_path / name)
    repo.add_remote("origin", url, endpoint)
    return repo


def _live_run(
    tmp_path: Path, remote_url: tuple[str, str | None]
) -> tuple[Repository, ExperimentTracker, Any]:
    """Store ``a`` with the remote ``origin``, and a run started in it, still live."""
    url, endpoint = remote_url
    a = _store(tmp_path, "a", url, endpoint)
    tracker = ExperimentTracker(a)
    return a, tracker, tracker.start("live")


def _flush(tracker: ExperimentTracker) -> None:
    """Write the live run's buffered metrics to its journal now."""
    assert tracker.current is not None and tracker.current._live is not None
    tracker.current._live.flush()


def test_two_stores_exchange_runs_weights_and_branches(
    tmp_path: Path, remote_url: tuple[str, str | None]
) -> None:
    url, endpoint = remote_url
    a = _store(tmp_path, "a", url, endpoint)
    run_a = _train(a, "run-a", 1)
    a.stage_weights(_w(9))
    on_main = a.commit("chosen for main").commit_hash
    first = a.push("origin")
    assert first.chunks_sent > 0 and "refs/heads/main" in first.refs
    again = a.push("origin")  # everything is there: nothing travels
    assert (again.chunks_sent, again.objects_sent, again.files_sent, again.refs) == (0, 0, 0, {})

    b = Repository.clone(url, tmp_path / "b", endpoint_url=endpoint)
    run_b = _train(b, "run-b", 2)
    b.push("origin")
    a.pull("origin")
    for repo in (a, b):
        names = {e.name for e in ExperimentTracker(repo).list()}
        assert names == {"run-a", "run-b"}  # the index was rebuilt from the pulled records
        assert repo.resolve("main") == on_main
        assert repo.resolve("origin/main") == on_main
    for eid in (run_a, run_b):
        theirs = b.get_all_weights(eid) if eid == run_a else a.get_all_weights(eid)
        mine = a.get_all_weights(eid) if eid == run_a else b.get_all_weights(eid)
        assert all(np.array_equal(theirs[k], mine[k]) for k in mine)
        assert len(a.log(run=eid)) == len(b.log(run=eid)) == 3
        assert a.resolve(f"{eid}~1") == b.resolve(f"{eid}~1")
    got = ExperimentTracker(b).get(run_a)
    assert [m.value for m in got.metrics] == [0.5, 1 / 3, 0.25]  # the journal travelled
    blob = got.artifacts[0]["blob"]
    assert (b.path / "blobs" / blob[:2] / blob[2:]).read_bytes() == b"notes of run-a"
    assert b.fsck().ok
    # The remote holds no secret, and neither does the store's configuration.
    for repo in (a, b):
        text = (repo.path / "config.toml").read_text() + (repo.path / "remotes.json").read_text()
        assert "coralx-test-secret" not in text and "AWS_SECRET" not in text


def test_a_pull_downloads_only_the_journal_segments_it_lacks(
    tmp_path: Path, remote_url: tuple[str, str | None]
) -> None:
    url, endpoint = remote_url
    a, tracker, exp = _live_run(tmp_path, remote_url)
    for step in range(2000):
        tracker.log("loss", 1.0 / (step + 1), step=step)
    _flush(tracker)
    a.push("origin")
    b = Repository.clone(url, tmp_path / "b", endpoint_url=endpoint)
    journal = a.path / "experiments" / f"{exp.experiment_id}.metrics"
    first = journal.stat().st_size
    tracker.log("loss", 0.5, step=2000)
    tracker.end()
    a.push("origin")
    report = b.pull("origin")
    theirs = b.path / "experiments" / f"{exp.experiment_id}.metrics"
    assert theirs.read_bytes() == journal.read_bytes()
    got = ExperimentTracker(b).get(exp.experiment_id)
    assert len(got.metrics) == 2001 and got.metrics[-1].value == 0.5
    assert report.bytes_received < first / 2, (report.bytes_received, first)


def test_one_more_checkpoint_sends_only_its_new_chunks_and_journal_bytes(
    tmp_path: Path, remote_url: tuple[str, str | None]
) -> None:
    url, endpoint = remote_url
    a, tracker, exp = _live_run(tmp_path, remote_url)
    a.stage_weights(_w(1, 0))
    a.commit("step 0")
    for step in range(100):
        tracker.log("loss", 1.0 / (step + 1), step=step)
    _flush(tracker)
    a.push("origin")
    journal = a.path / "experiments" / f"{exp.experiment_id}.metrics"
    size_before = journal.stat().st_size
    a.stage_weights(_w(1, 1))
    a.commit("step 1")  # layer.weight changes, layer.bias is the same chunk
    tracker.log("loss", 0.001, step=100)
    _flush(tracker)
    grown = journal.stat().st_size - size_before
    second = a.push("origin")
    assert second.chunks_sent == 1
    # The new chunk travels as a delta against the run's earlier checkpoint, which the remote
    # has: fewer bytes than the chunk stored whole.
    new_chunk = a.weights.manifest(a.resolve(exp.experiment_id)).tensors["layer.weight"].chunks[0]
    (base,) = a.weights.chunks.base_chain(new_chunk)
    assert second.chunk_bytes < 0.7 * a.weights.chunks.encoded_size(base)
    journal_sent = second.bytes_sent - second.chunk_bytes
    record = (a.path / "experiments" / f"{exp.experiment_id}.json").stat().st_size
    assert grown > 0 and journal_sent <= grown + record + 4096, (second, grown, record)
    tracker.end()
    b = Repository.clone(url, tmp_path / "b", endpoint_url=endpoint)
    got = ExperimentTracker(b).get(exp.experiment_id)
    assert len(got.metrics) == 101 and got.metrics[-1].value == 0.001
    assert np.array_equal(
        b.get_all_weights(exp.experiment_id)["layer.weight"], _w(1, 1)["layer.weight"]
    )
    assert b.weights.chunks.base_chain(new_chunk)  # decoded through its base, verified


def test_a_push_that_would_not_fast_forward_is_refused_with_advice(
    tmp_path: Path, remote_url: tuple[str, str | None]
) -> None:
    url, endpoint = remote_url
    a = _store(tmp_path, "a", url, endpoint)
    a.stage_weights(_w(1))
    a.commit("a1")
    a.push("origin")
    b = Repository.clone(url, tmp_path / "b", endpoint_url=endpoint)
    b.stage_weights(_w(2))
    b.commit("b1")
    b.push("origin")
    a.stage_weights(_w(3))
    mine = a.commit("a2").commit_hash
    with pytest.raises(PushRejected, match=r"fetch origin.*first, or push with --force"):
        a.push("origin")
    assert a.resolve("main") == mine  # nothing local changed
    report = a.fetch("origin")
    assert a.resolve("origin/main") == b.resolve("main") and report.refs
    assert a.pull("origin").note and "diverged" in a.pull("origin").note
    a.push("origin", force=True)
    b.fetch("origin")
    assert b.resolve("origin/main") == mine


@pytest.mark.parametrize("server", ["s3", "seaweed"])
def test_remote_refs_move_only_by_compare_and_swap_and_the_server_honours_it(
    server: str, request: pytest.FixtureRequest
) -> None:
    """Conditional writes (If-None-Match: *, If-Match: ETag) are honoured by the server (moto
    and SeaweedFS): of two writers racing from the same old value, exactly one wins."""
    s3: S3Server = request.getfixturevalue(server)
    refs = _TransportRefs(S3Transport(s3.make_bucket(), "p", s3.endpoint))
    ref = b"refs/heads/main"
    one, two, three = (bytes([c]) * 40 for c in b"123")
    graph.swap(refs, ref, None, one)
    with pytest.raises(ConcurrentUpdate):
        graph.swap(refs, ref, None, two)  # create-only: it exists
    with pytest.raises(ConcurrentUpdate):
        graph.swap(refs, ref, two, three)  # stale old value
    # The server itself refuses a write whose If-Match ETag is stale, even if the client
    # compared a value that was current when it read it.
    _data, tag = refs.t.read_tagged("refs/heads/main") or (b"", "")
    assert refs.t.put_if("refs/heads/main", two + b"\n", tag)
    assert not refs.t.put_if("refs/heads/main", three + b"\n", tag)
    assert not refs.t.put_if("refs/heads/main", three + b"\n", None)
    assert refs.read(ref) == two
    barrier = threading.Barrier(2)
    wins: list[bool] = []

    def writer(new: bytes) -> None:
        barrier.wait()
        try:
            graph.swap(refs, ref, two, new)
            wins.append(True)
        except ConcurrentUpdate:
            wins.append(False)

    threads = [threading.Thread(target=writer, args=(v,)) for v in (one, three)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False, True]


def test_a_swap_on_the_version_read_when_planning_is_refused_once_the_ref_moved(
    s3: S3Server,
) -> None:
    """A push's swap writes on the ETag it read when it planned (one request); another
    writer's move in between makes the server refuse it, and the swap then fails on the
    value read again, or succeeds only if the ref holds ``old`` again. (On moto only: the
    test SeaweedFS has volumes for few buckets; the test above checks its conditional
    writes.)"""
    transport = S3Transport(s3.make_bucket(), "p", s3.endpoint)
    mine, theirs = _TransportRefs(transport), _TransportRefs(transport)
    ref = b"refs/runs/0123456789abcdef0123"
    one, two, three = (bytes([c]) * 40 for c in b"123")
    graph.swap(mine, ref, None, one)
    assert mine.names(b"refs/runs/") == {ref: one}  # planned on this version
    graph.swap(theirs, ref, one, two)
    with pytest.raises(ConcurrentUpdate, match="found 2222"):
        graph.swap(mine, ref, one, three)
    assert theirs.read(ref) == two
    assert mine.names(b"refs/runs/") == {ref: two}
    graph.swap(theirs, ref, two, one)
    graph.swap(theirs, ref, one, two)  # moved away and back: same value, another version
    graph.swap(mine, ref, two, three)  # refused on the stale version, then done on the fresh
    assert theirs.read(ref) == three
    assert mine.names(b"refs/runs/x") == {}
    graph.swap(mine, b"refs/runs/x", None, one)  # seen absent: created only if still absent
    with pytest.raises(ConcurrentUpdate):
        graph.swap(theirs, b"refs/runs/x", None, two)


def test_a_damaged_remote_chunk_is_refused_and_nothing_local_changes(tmp_path: Path) -> None:
    url = str(tmp_path / "shared")
    a = _store(tmp_path, "a", url, None)
    eid = _train(a, "run", 1)
    a.push("origin")
    b = Repository.init(tmp_path / "b")
    b.add_remote("origin", url)
    chunk = a.weights.manifest(a.resolve(eid)).tensors["layer.weight"].chunks[0]
    path = Path(url) / "chunks" / chunk[:2] / chunk[2:]
    data = path.read_bytes()
    os.chmod(path, 0o644)
    path.write_bytes(data[: len(data) // 2])  # truncated on the remote
    before = sorted(p.relative_to(b.path) for p in b.path.rglob("*") if "index" not in p.name)
    with pytest.raises(RemoteCorrupted, match=chunk):
        b.pull("origin")
    after = sorted(p.relative_to(b.path) for p in b.path.rglob("*") if "index" not in p.name)
    assert [p for p in after if not str(p).startswith("remotes")] == [
        p for p in before if not str(p).startswith("remotes")
    ]
    path.write_bytes(data)  # repaired: the pull completes
    b.pull("origin")
    assert np.array_equal(b.get_all_weights(eid)["layer.weight"], _w(1, 2)["layer.weight"])


def test_a_remote_of_a_newer_format_is_refused_with_its_version(tmp_path: Path) -> None:
    url = tmp_path / "shared"
    a = _store(tmp_path, "a", str(url), None)
    _train(a, "run", 1, steps=1)
    a.push("origin")
    (url / "coralx-remote.json").write_text(json.dumps({"format": 7}))
    with pytest.raises(RemoteError, match="remote format 7"):
        a.push("origin")
    with pytest.raises(RemoteError, match="remote format 7"):
        Repository.clone(str(url), tmp_path / "c")
    assert not (tmp_path / "c" / ".coralx").exists()


_KILLER = """
import os, signal, sys
from coralx import Repository
from coralx.remote import transport
count = [0]
real = transport.{cls}.put_if  # chunks are written by a conditional create
def put_if(self, key, data, tag):
    if key.startswith("chunks/"):
        count[0] += 1
        if count[0] > {after}:
            os.kill(os.getpid(), signal.SIGKILL)
    return real(self, key, data, tag)
transport.{cls}.put_if = put_if
Repository(sys.argv[1]).push("origin")
"""


def test_kill_9_during_push_leaves_both_sides_consistent_and_a_rerun_sends_the_rest(
    tmp_path: Path, remote_url: tuple[str, str | None]
) -> None:
    url, endpoint = remote_url
    a = _store(tmp_path, "a", url, endpoint)
    tracker = ExperimentTracker(a)
    with tracker.start("big"):
        for step in range(4):
            a.stage_weights({f"t{i}": np.full(20_000, step * 100 + i, "f4") for i in range(40)})
            a.commit(f"step {step}")
    cls = "FolderTransport" if endpoint is None else "S3Transport"
    code = _KILLER.format(cls=cls, after=30)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code, str(a.root)], env=env, timeout=300)
    assert done.returncode == -9
    b = Repository.init(tmp_path / "b")
    b.add_remote("origin", url, endpoint)
    # The remote has some chunks but no ref or record names them yet: a pull gets nothing
    # half-made (no run, no run line), and the store stays whole.
    b.pull("origin")
    assert ExperimentTracker(b).list() == [] and not graph.LocalRefs(b.git).names(b"refs/runs/")
    eid = ExperimentTracker(a).list()[0].experiment_id
    chunks = {
        c
        for commit in a.log(run=eid)
        for t in a.weights.manifest(commit.commit_hash).tensors.values()
        for c in t.chunks
    }
    rerun = a.push("origin")
    assert len(chunks) == 160 and 0 < rerun.chunks_sent < 160  # only what was still missing
    b.pull("origin")
    eid = ExperimentTracker(a).list()[0].experiment_id
    assert b.get_all_weights(eid)["t3"][0] == 303
    assert b.fsck().ok


_PULL_KILLER = """
import os, signal, sys
from coralx import Repository
from coralx.remote import transport
count = [0]
real = transport.FolderTransport.get
def get(self, key):
    if key.startswith("chunks/"):
        count[0] += 1
        if count[0] > 20:
            os.kill(os.getpid(), signal.SIGKILL)
    return real(self, key)
transport.FolderTransport.get = get
Repository(sys.argv[1]).pull("origin")
"""


def test_kill_9_during_pull_lands_nothing_half_made_and_a_rerun_completes(
    tmp_path: Path,
) -> None:
    url = str(tmp_path / "shared")
    a = _store(tmp_path, "a", url, None)
    tracker = ExperimentTracker(a)
    with tracker.start("big") as exp:
        for step in range(2):
            a.stage_weights({f"t{i}": np.full(20_000, step * 100 + i, "f4") for i in range(40)})
            a.commit(f"step {step}")
    a.push("origin")
    b = _store(tmp_path, "b", url, None)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", _PULL_KILLER, str(b.root)], env=env, timeout=300)
    assert done.returncode == -9
    b = Repository(b.root)
    assert ExperimentTracker(b).list() == []  # no record, no run line, no chunk landed
    assert not graph.LocalRefs(b.git).names(b"refs/runs/")
    assert not any((b.path / "chunks").rglob("*"))
    assert b.fsck().ok
    b.pull("origin")
    assert b.get_all_weights(exp.experiment_id)["t39"][0] == 139 and b.fsck().ok


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["push", "nowhere"], "no remote named 'nowhere'"),
        (["remote", "add", "x", "ftp://host/path"], "unsupported remote URL"),
        (["remote", "add", "x", "s3://AB/c"], "malformed s3 URL"),
        (["remote", "add", "x", "s3://key:secret@bucket/p"], "must not carry credentials"),
    ],
)
def test_bad_remote_input_is_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    repo = Repository.init(tmp_path / "p")
    before = sorted(p.name for p in repo.path.iterdir())
    result = CliRunner().invoke(cli, ["-C", str(repo.root), *args])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert sorted(p.name for p in repo.path.iterdir()) == before


def test_unreachable_endpoint_and_missing_bucket_are_one_clear_line(
    tmp_path: Path, s3: S3Server
) -> None:
    import socket

    repo = Repository.init(tmp_path / "p")
    _train(repo, "run", 1, steps=1)
    bucket = s3.make_bucket()
    # A port held bound but not listening: connections to it are refused for the whole test
    # (a port only found free could be taken meanwhile, by a test server's second port).
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    try:
        port = dead.getsockname()[1]
        repo.add_remote("dead", f"s3://{bucket}/p", f"http://127.0.0.1:{port}")
        repo.add_remote("nobucket", "s3://no-such-bucket-here/p", s3.endpoint)
        repo.add_remote("good", f"s3://{bucket}/p", s3.endpoint)
        runner = CliRunner()
        for name, message in (("dead", "cannot reach"), ("nobucket", "does not exist")):
            result = runner.invoke(cli, ["-C", str(repo.root), "push", name])
            assert result.exit_code != 0
            assert len(result.output.strip().splitlines()) == 1 and message in result.output, (
                result.output
            )
    finally:
        dead.close()


def test_wrong_credentials_are_one_clear_line_and_change_nothing(
    tmp_path: Path, seaweed: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SeaweedFS checks credentials (moto accepts any)."""
    repo = Repository.init(tmp_path / "p")
    _train(repo, "run", 1, steps=1)
    repo.add_remote("origin", f"s3://{seaweed.make_bucket()}/p", seaweed.endpoint)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    result = CliRunner().invoke(cli, ["-C", str(repo.root), "push"])
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [
        f"error: {repo.remotes()[0]['url']}: access denied by {seaweed.endpoint}; check the "
        "AWS credentials (environment, profile or role)"
    ]
    assert not (repo.path / "remotes").exists()


def test_an_s3_url_without_the_s3_extra_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "obstore" else real(n, *a)
    )
    repo = Repository.init(tmp_path / "p")
    result = CliRunner().invoke(cli, ["-C", str(repo.root), "remote", "add", "o", "s3://bkt/p"])
    assert result.exit_code != 0
    assert "pip install 'coralx[s3]'" in result.output and repo.remotes() == []
    monkeypatch.setitem(sys.modules, "obstore.store", None)  # installed once, then removed
    from coralx.errors import MissingDependency
    from coralx.remote.transport import open_transport

    with pytest.raises(MissingDependency, match=r"coralx\[s3\]"):
        open_transport("s3://bkt/p")


def test_cli_remote_push_fetch_log_and_clone(tmp_path: Path) -> None:
    runner = CliRunner()
    a = Repository.init(tmp_path / "a")
    eid = _train(a, "run", 1)
    a.stage_weights(_w(5))
    a.commit("main")
    shared = tmp_path / "shared.coralx"

    def run(*args: str, where: Path) -> str:
        result = runner.invoke(cli, ["-C", str(where), *args])
        assert result.exit_code == 0, result.output
        return result.output

    run("remote", "add", "origin", str(shared), where=a.root)
    assert "origin" in run("remote", "list", where=a.root)
    assert "pushed to origin" in run("push", where=a.root)
    out = runner.invoke(cli, ["clone", str(shared), str(tmp_path / "b")])
    assert out.exit_code == 0, out.output
    b = tmp_path / "b"
    assert "fetched from origin" in run("fetch", where=b)
    assert "main" in run("log", "origin/main", where=b)
    assert "step 2" in run("log", "--run", eid, where=b)
    assert run("diff", f"{eid}~1", eid, where=b)
    if shutil.which("git"):
        log = subprocess.run(
            ["git", f"--git-dir={shared}", "log", "--oneline", "main"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "main" in log  # the folder remote is an ordinary bare git repository
    run("remote", "remove", "origin", where=b)
    assert "origin" not in run("remote", "list", where=b)


def test_a_chunk_on_the_remote_is_never_replaced_by_another_encoding(
    tmp_path: Path, remote_url: tuple[str, str | None]
) -> None:
    """Store b holds a version as a delta (it trained up to it) that store a pushed whole:
    b's push sends no HEAD for its new delta, and the conditional create leaves a's object."""
    from coralx.remote import open_remote
    from coralx.remote.chunks import chunk_key

    url, endpoint = remote_url
    a = _store(tmp_path, "a", url, endpoint)
    b = _store(tmp_path, "b", url, endpoint)
    a.stage_weights({"w": _w(1, 1)["layer.weight"]})
    a.commit("a: step 1 only")
    a.push("origin")
    b.stage_weights({"w": _w(1, 0)["layer.weight"]})
    b.commit("b: step 0")
    b.stage_weights({"w": _w(1, 1)["layer.weight"]})
    b.commit("b: step 1")
    (cid,) = b.weights.manifest(b.resolve("main")).tensors["w"].chunks
    assert b.weights.chunks.base_chain(cid)  # a delta here, whole on the remote
    theirs = open_remote(a, "origin").transport.get(chunk_key(cid))
    b.fetch("origin")
    b.push("origin", force=True)
    assert open_remote(b, "origin").transport.get(chunk_key(cid)) == theirs
    c = Repository.clone(url, tmp_path / "c", endpoint_url=endpoint)
    assert np.array_equal(c.get_all_weights("main")["w"], _w(1, 1)["layer.weight"])
    assert c.fsck().ok


def test_what_a_pull_brought_is_known_on_the_remote_and_never_checked_again(
    tmp_path: Path, remote_url: tuple[str, str | None]
) -> None:
    url, endpoint = remote_url
    a = _store(tmp_path, "a", url, endpoint)
    _train(a, "run-a", 1)
    a.push("origin")
    b = Repository.clone(url, tmp_path / "b", endpoint_url=endpoint)
    b.stage_weights({"new": np.arange(1000, dtype="f4")})
    b.commit("one new chunk")
    report = b.push("origin")
    assert (report.chunks_checked, report.chunks_sent) == (1, 1)


def test_a_pull_decodes_the_downloaded_bytes_even_when_the_chunk_is_cached_here(
    tmp_path: Path,
) -> None:
    """The writer's process caches whole chunks it stored; a pull in that process must still
    verify what it downloaded, not the cached copy."""
    from coralx.store.base import base_cache

    url = str(tmp_path / "shared")
    a = _store(tmp_path, "a", url, None)
    a.stage_weights({"w": _w(4)["layer.weight"]})
    a.commit("one whole chunk")
    a.push("origin")
    (cid,) = a.weights.manifest(a.resolve("main")).tensors["w"].chunks
    assert base_cache.get(cid) is not None
    path = Path(url) / "chunks" / cid[:2] / cid[2:]
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    b = _store(tmp_path, "b", url, None)
    with pytest.raises(RemoteCorrupted, match=cid):
        b.pull("origin")
    assert not b.weights.chunks.has(cid)


@pytest.mark.parametrize("route", ["syncfs", "fsync each", "others busy"])
def test_a_pull_makes_every_chunk_durable_before_it_lands_and_before_any_ref_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    """Downloads are made durable together, and the order holds: a chunk (or blob) file is
    durable before it is renamed into ``chunks/`` (``blobs/``), and every such folder before
    a ref or record names them. On every route: one syncfs where the file system honours
    it, an fsync each where it does not (``CORALX_SYNCFS=0``), and an fsync each when other
    processes have much unwritten (a syncfs would wait for it)."""
    if route == "fsync each":
        monkeypatch.setenv("CORALX_SYNCFS", "0")
    url = str(tmp_path / "shared")
    a = _store(tmp_path, "a", url, None)
    _train(a, "run", 1)
    a.push("origin")
    b = _store(tmp_path, "b", url, None)
    chunks = b.path / "chunks"
    synced: set[tuple[int, int]] = set()  # (device, inode) of every fsync'd file or folder
    landed: list[Path] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        real_fsync(fd)
        st = os.fstat(fd)
        synced.add((st.st_dev, st.st_ino))

    def durable(path: Path) -> bool:
        st = os.stat(path)
        return (st.st_dev, st.st_ino) in synced

    def replace(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
        if Path(dest).parent.parent in (chunks, b.path / "blobs"):
            assert durable(Path(src)), f"{dest} landed before its bytes were durable"
            landed.append(Path(dest))
        real_replace(src, dest)

    real_swap = graph.swap

    def swap(refs: graph.RefStore, ref: bytes, old: bytes | None, new: bytes | None) -> None:
        if isinstance(refs, graph.LocalRefs) and landed:
            assert all(durable(p.parent) for p in landed), "a ref moved before chunks were"
            assert durable(chunks) and durable(b.path / "blobs")  # the new folders' entries
        real_swap(refs, ref, old, new)

    real_fsync_one = kernels.fsync_one

    def fsync_one(path: str) -> bool:  # the C route: one call opens, fsyncs and closes
        done = real_fsync_one(path)
        if done:
            st = os.stat(path)
            synced.add((st.st_dev, st.st_ino))
        return done

    real_syncfs = kernels.syncfs
    syncfs_calls: list[str] = []

    def syncfs(folder: str) -> None:  # one call for the whole file system: all that is there
        real_syncfs(folder)
        syncfs_calls.append(folder)
        dev = os.stat(folder).st_dev
        for top, dirs, files in os.walk(tmp_path):
            for name in [*dirs, *files, "."]:
                st = os.lstat(os.path.join(top, name))
                if st.st_dev == dev:
                    synced.add((st.st_dev, st.st_ino))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(kernels, "fsync_one", fsync_one)
    monkeypatch.setattr(kernels, "syncfs", syncfs)
    from coralx import _fs

    # not what earlier tests left unwritten: what the route says
    monkeypatch.setattr(_fs, "_unwritten_bytes", lambda: (4 << 30) if route == "others busy" else 0)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(graph, "swap", swap)
    b.pull("origin")
    # one syncfs made them durable only where the file system honours it and is not busy
    assert bool(syncfs_calls) == (route == "syncfs" and _fs.syncfs_trusted(b.path))
    assert {p.parent.parent for p in landed} == {chunks, b.path / "blobs"} and b.fsck().ok
