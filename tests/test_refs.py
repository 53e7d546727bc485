"""Refs: every move is one compare-and-swap; each run's weight commits form their own line."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import coralx
from coralx import Repository, graph
from coralx.errors import ConcurrentUpdate, InvalidName
from coralx.experiments import ExperimentTracker
from coralx.sweeps import Config, Run

from .conftest import git


def _w(seed: int, step: int = 0, n: int = 20_000) -> dict[str, np.ndarray]:
    base = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
    return {"w": base + np.float32(step * 1e-3)}


def test_two_writers_race_on_a_ref_and_the_loser_gets_concurrent_update(
    repo: Repository,
) -> None:
    refs = graph.LocalRefs(repo.git)
    ref = b"refs/heads/main"
    old = refs.read(ref)
    news = []
    for i in range(2):
        repo.stage_weights(_w(i))
        news.append(repo.commit(f"c{i}", branch=f"side{i}").commit_hash.encode())
    barrier = threading.Barrier(2)
    outcome: dict[int, str] = {}

    def writer(i: int) -> None:
        barrier.wait()  # both read the same old value, then race to swap
        try:
            graph.swap(refs, ref, old, news[i])
            outcome[i] = "won"
        except ConcurrentUpdate as exc:
            outcome[i] = str(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(v == "won" for v in outcome.values()) == [False, True]
    winner = next(i for i, v in outcome.items() if v == "won")
    loser = 1 - winner
    assert refs.read(ref) == news[winner]
    assert "refs/heads/main moved" in outcome[loser]


def test_a_stale_swap_is_refused_and_changes_nothing(repo: Repository) -> None:
    refs = graph.LocalRefs(repo.git)
    head = refs.read(b"refs/heads/main")
    with pytest.raises(ConcurrentUpdate, match="expected no ref"):
        graph.swap(refs, b"refs/heads/main", None, head)  # "create" an existing ref
    with pytest.raises(ConcurrentUpdate):
        graph.swap(refs, b"refs/heads/main", b"0" * 40, head)
    assert refs.read(b"refs/heads/main") == head
    with pytest.raises(InvalidName):
        graph.swap(refs, b"refs/../../x", None, head)
    with pytest.raises(InvalidName):
        graph.swap(refs, b"objects/x", None, head)


def test_checkout_branch_force_and_tag_move_refs_through_the_one_swap(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.stage_weights(_w(0))
    first = repo.commit("one").commit_hash
    repo.stage_weights(_w(1))
    second = repo.commit("two").commit_hash
    moves: list[tuple[bytes, bytes | None, bytes | None]] = []
    real = graph.LocalRefs._swap

    def spy(self: graph.LocalRefs, ref: bytes, old: bytes | None, new: bytes | None) -> bool:
        moves.append((ref, old, new))
        return real(self, ref, old, new)

    monkeypatch.setattr(graph.LocalRefs, "_swap", spy)
    repo.create_branch("exp", first)
    repo.create_branch("exp", second, force=True)
    repo.tag("v1", first)
    repo.checkout(first)  # detached
    repo.checkout("main")  # attached again
    assert moves == [
        (b"refs/heads/exp", None, first.encode()),
        (b"refs/heads/exp", first.encode(), second.encode()),
        (b"refs/tags/v1", None, first.encode()),
        (b"HEAD", b"ref: refs/heads/main", first.encode()),
        (b"HEAD", first.encode(), b"ref: refs/heads/main"),
    ]
    assert repo.current_branch() == "main" and repo.head_commit() == second


def test_a_runs_commits_form_their_own_line_and_main_does_not_move(repo: Repository) -> None:
    tracker = ExperimentTracker(repo)
    main_before = repo.resolve("main")
    a = tracker.start("a")
    repo.stage_weights(_w(1))
    a1 = repo.commit("a1").commit_hash
    tracker.end()
    b = tracker.start("b")
    repo.stage_weights(_w(2))
    b1 = repo.commit("b1").commit_hash
    tracker.end()
    a = tracker.resume(a.experiment_id)  # a resumed run continues its parent's line
    repo.stage_weights(_w(1, 1))
    a2 = repo.commit("a2").commit_hash
    tracker.end()
    assert repo.resolve("main") == main_before
    assert [c.commit_hash for c in repo.log(run=a.experiment_id)] == [a2]
    assert repo.resolve(f"{a.experiment_id}~1") == a1
    assert repo.resolve(f"{b.experiment_id}~1") == main_before  # b started at main's head
    assert [c.commit_hash for c in repo.log(run=b.experiment_id[:16])] == [b1]
    # Outside a run, a commit moves the current branch; branch= puts it on that branch.
    repo.stage_weights(_w(3))
    plain = repo.commit("plain")
    assert repo.resolve("main") == plain.commit_hash and plain.parents == [main_before]
    tracker.start("c")
    repo.stage_weights(_w(4))
    chosen = repo.commit("chosen", branch="best")
    tracker.end()
    assert repo.resolve("best") == chosen.commit_hash and chosen.parents == [plain.commit_hash]
    assert repo.resolve("main") == plain.commit_hash


def test_weight_commits_take_the_identity_of_the_work_tree_the_run_came_from(
    git_workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coralx import identity

    monkeypatch.delenv("CORALX_AUTHOR_NAME")
    monkeypatch.delenv("CORALX_AUTHOR_EMAIL")
    home = Path(str(Path.home()))
    (home / ".gitconfig").write_text("[user]\n\tname = Global Name\n\temail = global@example.com\n")
    git(git_workdir, "config", "user.name", "Project Name")
    identity.author_identity.cache_clear()
    repo = Repository.init(git_workdir)
    monkeypatch.chdir(git_workdir)
    tracker = ExperimentTracker(repo)
    tracker.start("run")
    repo.stage_weights(_w(0))
    commit = repo.commit("from the project")
    tracker.end()
    # The work tree's own user.name, and the global email it does not set.
    assert commit.author == "Project Name <global@example.com>"


# -- a sweep with two workers: runs never interleave ---------------------------------------------


@coralx.experiment(name="lines")
def lines_exp(config: Config, run: Run) -> dict[str, float]:
    import time

    for step in range(3):
        run.commit_weights(_w(config.seed_of_data, step), f"{run.name} step {step}")
        time.sleep(0.05)  # the two workers' commits alternate in time
    return {"loss": 0.0}


@lines_exp.configs
def _lines_configs() -> object:
    return coralx.grid({"seed_of_data": [11, 22, 33, 44]})


def test_a_two_worker_sweeps_runs_never_interleave(repo: Repository) -> None:
    main_before = repo.resolve("main")
    result = lines_exp.run_sweep(repo=repo, executor="fork", workers=2)
    assert [r.status for r in result.results] == ["completed"] * 4, result.results
    ids = [str(r.experiment_id) for r in result.results]
    assert len(ids) == 4
    assert repo.resolve("main") == main_before  # the sweep did not touch main
    line_chunks: dict[str, list[str]] = {}
    for eid in ids:
        line = repo.log(run=eid)
        assert len(line) == 3 and {c.experiment_id for c in line} == {eid}
        # HEAD~1 of a run is the same run's previous checkpoint, and its first commit sits
        # on main's head.
        assert line[0].parents == [line[1].commit_hash]
        assert line[2].parents == [main_before]
        d = repo.diff(f"{eid}~1", eid)
        assert (d.rev_a, d.rev_b) == (line[1].commit_hash, line[0].commit_hash)
        assert d.changed and d.changed[0].max_abs_change == pytest.approx(1e-3, rel=0.01)
        manifests = [repo.weights.manifest(c.commit_hash) for c in line]
        line_chunks[eid] = [m.tensors["w"].chunks[0] for m in manifests if m]
    # The delta base of a checkpoint is a checkpoint of the same run (each chunk's versions
    # are deltas on the whole first version of their group): never another run's.
    store = repo.weights.chunks
    for chunks in line_chunks.values():
        newest, middle, oldest = chunks
        assert store.base_chain(oldest) == []
        assert store.base_chain(middle) == [oldest]
        assert store.base_chain(newest) == [oldest]
