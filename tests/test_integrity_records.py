"""Integrity of what a run records: one bad value costs only itself, damaged journals and
records are reported (never silent), and reindex names what it could not read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coralx import Repository
from coralx.errors import InvalidValue, RecordDamaged
from coralx.experiments import ExperimentTracker
from coralx.records.journal import MAGIC_V1, JournalDamaged, read_journal


@pytest.fixture(autouse=True)
def _outside_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def tracker(repo: Repository) -> ExperimentTracker:
    return ExperimentTracker(repo)


# -- 1. one bad value never costs other values -----------------------------------------------


@pytest.mark.parametrize("step", [2**63, -(2**63), 10**30, -(2**64)])
def test_a_step_outside_64_bits_is_refused_at_the_call(
    tracker: ExperimentTracker, step: int
) -> None:
    exp = tracker.start("steps")
    tracker.log("loss", 1.0, step=1)
    with pytest.raises(InvalidValue, match="out of range"):
        tracker.log("loss", 5.0, step=step)
    tracker.log("loss", 2.0, step=2)
    tracker.flush()
    done = tracker.end()
    assert done.status == "completed"
    assert [(m.step, m.value) for m in done.get_metric_history("loss")] == [(1, 1.0), (2, 2.0)]
    assert tracker.get(exp.experiment_id).metrics_summary["loss"]["count"] == 2


def test_the_largest_steps_are_kept(tracker: ExperimentTracker) -> None:
    tracker.start("edges")
    tracker.log("loss", 1.0, step=2**63 - 1)
    tracker.log("loss", 2.0, step=-(2**63) + 1)
    done = tracker.end()
    steps = [m.step for m in done.get_metric_history("loss")]
    assert steps == [2**63 - 1, -(2**63) + 1]


def test_a_huge_integer_value_is_invalid_value(tracker: ExperimentTracker) -> None:
    tracker.start("big")
    with pytest.raises(InvalidValue, match="64-bit float"):
        tracker.log("loss", 10**400)
    with pytest.raises(InvalidValue):
        tracker.log_metrics({"loss": 10**400, "acc": 1.0})
    tracker.log("loss", 3.0)
    assert tracker.end().get_latest_metric("loss").value == 3.0  # type: ignore[union-attr]


def test_a_bad_item_in_the_buffer_costs_only_itself(tracker: ExperimentTracker) -> None:
    """Whatever slips into the buffer, the flusher writes every valid value of the batch."""
    tracker.start("poison")
    tracker.log("loss", 1.0, step=1)
    run = tracker._run
    assert run is not None
    run.buffer.append(("loss", 5.0, 2**63))  # as the old fast path let through
    tracker.log("loss", 2.0, step=2)
    tracker.log("acc", 0.5, step=2)
    tracker.flush()
    with pytest.raises(Exception, match="1 value"):
        tracker.end()
    got = read_journal(run.journal.path)
    assert got.values.tolist() == [1.0, 2.0, 0.5]
    assert tracker.get(run.record.experiment_id).status == "completed"


# -- 2. journals --------------------------------------------------------------------------------


def _journal_with_frames(tracker: ExperimentTracker, frames: int, per: int) -> Path:
    exp = tracker.start("journal")
    for f in range(frames):
        for i in range(per):
            tracker.log("loss", float(f * per + i), step=f * per + i)
        tracker.flush(wait=False)
    tracker.end()
    return tracker.repo.path / "experiments" / f"{exp.experiment_id}.metrics"


def _frame_starts(data: bytes) -> list[int]:
    out, pos = [], data.find(b"CXJ")
    while pos >= 0:
        out.append(pos)
        pos = data.find(b"CXJ", pos + 1)
    return out


def test_a_flipped_byte_costs_only_its_frame_and_is_reported(
    tracker: ExperimentTracker,
) -> None:
    path = _journal_with_frames(tracker, frames=3, per=100)
    data = bytearray(path.read_bytes())
    starts = _frame_starts(bytes(data))
    assert len(starts) == 3
    data[starts[1] + 40] ^= 0x01  # one bit, in the middle frame
    path.write_bytes(bytes(data))
    cols = read_journal(path)
    assert cols.values.tolist() == [float(i) for i in range(100)] + [
        float(i) for i in range(200, 300)
    ]
    assert cols.damage == [(starts[1], starts[2] - starts[1])]
    assert not cols.torn
    run_id = path.name.split(".")[0]
    exp = tracker.get(run_id)
    with pytest.warns(
        JournalDamaged, match=rf"run {run_id}.*bytes {starts[1]}-.*'loss' \(200 of 300"
    ):
        history = exp.get_metric_history("loss")
    assert len(history) == 200


def test_damage_in_the_first_frame_does_not_lose_the_names(tracker: ExperimentTracker) -> None:
    path = _journal_with_frames(tracker, frames=2, per=10)
    data = bytearray(path.read_bytes())
    data[12] ^= 0xFF  # inside the first frame's name table
    path.write_bytes(bytes(data))
    cols = read_journal(path)
    assert cols.select("loss")[0].tolist() == [float(i) for i in range(10, 20)]
    assert len(cols.damage) == 1


def test_a_damaged_length_field_is_skipped_too(tracker: ExperimentTracker) -> None:
    path = _journal_with_frames(tracker, frames=3, per=10)
    data = bytearray(path.read_bytes())
    data[5] ^= 0x10  # the first frame's length
    path.write_bytes(bytes(data))
    cols = read_journal(path)
    assert cols.values.tolist() == [float(i) for i in range(10, 30)]
    assert cols.damage and cols.damage[0][0] == 0


def test_journals_of_the_first_format_still_read(tmp_path: Path) -> None:
    """A journal written before frames were checksummed over their header (CXJ1)."""
    import struct
    import zlib

    def v1(names: list[tuple[int, str]], ids: list[int], vals: list[float]) -> bytes:
        parts = [struct.pack("<I", len(names))]
        for nid, name in names:
            parts += [struct.pack("<IH", nid, len(name)), name.encode()]
        n = len(ids)
        parts += [struct.pack("<I", n), struct.pack(f"<{n}I", *ids), struct.pack(f"<{n}d", *vals)]
        parts += [struct.pack(f"<{n}q", *range(n)), struct.pack(f"<{n}d", *([1.0] * n))]
        payload = b"".join(parts)
        return struct.pack("<4sII", MAGIC_V1, len(payload), zlib.crc32(payload)) + payload

    path = tmp_path / "old.metrics"
    path.write_bytes(v1([(0, "loss")], [0, 0], [1.0, 2.0]) + v1([(1, "acc")], [1, 0], [0.5, 3.0]))
    cols = read_journal(path)
    assert cols.select("loss")[0].tolist() == [1.0, 2.0, 3.0]
    assert cols.select("acc")[0].tolist() == [0.5]
    assert not cols.damage


def test_exp_metrics_names_the_damage(repo: Repository, tracker: ExperimentTracker) -> None:
    from click.testing import CliRunner

    from coralx.cli.main import cli

    path = _journal_with_frames(tracker, frames=1, per=300)
    data = bytearray(path.read_bytes())
    data[100] ^= 0x04
    path.write_bytes(bytes(data))
    run_id = path.name.split(".")[0]
    result = CliRunner().invoke(cli, ["-C", str(repo.root), "exp", "metrics", run_id, "loss"])
    assert result.exit_code == 3, result.output
    assert "damaged" in result.output and "0 of 300" in result.output
    assert "it has: loss" not in result.output


# -- 2. records -------------------------------------------------------------------------------


def _record(repo: Repository, eid: str) -> Path:
    return repo.path / "experiments" / f"{eid}.json"


def test_a_changed_param_is_reported_as_damage(
    repo: Repository, tracker: ExperimentTracker
) -> None:
    eid = tracker.start("digest", params={"lr": 0.125}).experiment_id
    tracker.end()
    path = _record(repo, eid)
    text = path.read_text()
    assert '"digest": "sha256:' in text
    assert json.loads(text)["params"] == {"lr": 0.125}
    path.write_text(text.replace("0.125", "0.135"))
    fresh = ExperimentTracker(Repository.open(repo.root))
    with pytest.raises(RecordDamaged) as info:
        fresh.get(eid)
    message = str(info.value)
    assert str(path) in message and "digest" in message
    assert "coralx fsck --repair" in message and "coralx pull" in message


def test_broken_json_is_damage_not_not_found(repo: Repository, tracker: ExperimentTracker) -> None:
    eid = tracker.start("broken").experiment_id
    tracker.end()
    path = _record(repo, eid)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(RecordDamaged, match="not valid JSON"):
        ExperimentTracker(Repository.open(repo.root)).get(eid)


def test_records_without_a_digest_still_read(repo: Repository, tracker: ExperimentTracker) -> None:
    """Stores made before digests existed."""
    from coralx.records.store import unseal

    eid = tracker.start("old", params={"lr": 0.5}).experiment_id
    tracker.end()
    path = _record(repo, eid)
    path.write_text(unseal(path.read_text()))
    assert "digest" not in path.read_text()
    got = ExperimentTracker(Repository.open(repo.root)).get(eid)
    assert got.params == {"lr": 0.5}


def test_reindex_names_every_record_it_could_not_read(
    repo: Repository, tracker: ExperimentTracker
) -> None:
    ids = []
    for i in range(4):
        ids.append(tracker.start(f"r{i}", params={"i": i}).experiment_id)
        tracker.end()
    tracker.flush()  # the index rows of the ended runs (held by end()) are written
    for eid in ids[:2]:
        path = _record(repo, eid)
        path.write_text(path.read_text().replace('"r', '"R', 1))
    result = tracker.reindex()
    named = "\n".join(result["unreadable_files"])
    assert all(eid in named for eid in ids[:2]) and ids[2] not in named
    assert result["unreadable"] == 2
    # The damaged runs' last indexed copies are kept, and repair brings them back.
    assert result["recoverable"] == sorted(ids[:2])
    assert len(tracker.list()) == 4
    assert tracker._store.repair(ids[0])
    assert tracker.get(ids[0]).params == {"i": 0}


def test_a_damaged_record_does_not_stop_listing(
    repo: Repository, tracker: ExperimentTracker
) -> None:
    eid = tracker.start("live").experiment_id
    path = _record(repo, eid)
    tracker.end()
    good = tracker.start("good").experiment_id
    tracker.end()
    path.write_text("{")
    names = {e.experiment_id for e in ExperimentTracker(Repository.open(repo.root)).list()}
    assert good in names


# -- the journal reader under any damage -------------------------------------------------------


def _clean_journal() -> bytes:
    from coralx.records.journal import encode_frame

    frames = []
    for f in range(4):
        ids = [0, 1] * 5
        values = [float(f * 10 + i) for i in range(10)]
        frames.append(encode_frame([(0, "a"), (1, "b")], ids, values, list(range(10)), [1.0] * 10))
    return b"".join(frames)


CLEAN = _clean_journal()
LOGGED = [float(i) for i in range(40)]


@settings(max_examples=200, deadline=None)
@given(
    flips=st.lists(st.tuples(st.integers(0, len(CLEAN) - 1), st.integers(1, 255)), max_size=6),
    cut=st.integers(0, len(CLEAN)),
)
def test_fuzz_a_damaged_journal_reads_only_what_was_logged(
    flips: list[tuple[int, int]], cut: int
) -> None:
    import tempfile

    data = bytearray(CLEAN[:cut])
    for offset, mask in flips:
        if offset < len(data):
            data[offset] ^= mask
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "j.metrics"
        path.write_bytes(bytes(data))
        cols = read_journal(path)
    got = cols.values.tolist()
    # Never a value that was not logged, never out of order; damage is reported, not silent.
    it = iter(LOGGED)
    assert all(any(v == w for w in it) for v in got)
    if not flips and cut == len(CLEAN):
        assert got == LOGGED and not cols.damage
    touched = any(offset < cut for offset, _mask in flips)
    if touched and cut == len(CLEAN) and len(got) < len(LOGGED):
        assert cols.damage or cols.torn  # a damaged last length reads as a torn write
