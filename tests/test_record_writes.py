"""The record write path: what it indexes, and in what order revisions land."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from coralx._fs import atomic_write
from coralx.records.index import Index, file_stamp
from coralx.records.models import CodeInfo, ExperimentRecord, MetricSummary, SweepInfo


def _record() -> ExperimentRecord:
    return ExperimentRecord(
        experiment_id="0194c2aa00000000beef",
        name="bert",
        status="running",
        params={"lr": 0.01, "opt": {"name": "adam", "betas": [0.9, 0.99]}},
        tags=["b", "a"],
        code=CodeInfo(commit="c" * 40, branch="main"),
        branch="main",
        parent_experiment="0194c2aa00000000cafe",
        sweep=SweepInfo(sweep_id="0194c2aa00000000f00d"),
        host="h",
        pid=12,
        pid_start=34,
        lease_until=1.5e9,
        commit_hash="w" * 8,
        metrics_summary={
            "loss": MetricSummary(last=float("nan"), min=0.5, max=2.0, count=3),
            "acc": MetricSummary(last=0.9, min=0.1, max=0.9, count=2),
        },
        revision=4,
    )


def _rows(path: Path) -> list[list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return [
            sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in ("experiments", "tags", "metrics")
        ]
    finally:
        conn.close()


def test_index_view_indexes_like_the_stored_json(tmp_path: Path) -> None:
    record = _record()
    text = record.to_json()
    from_json, from_view = Index(tmp_path / "a.sqlite"), Index(tmp_path / "b.sqlite")
    assert from_json.upsert(json.loads(text), text, "stamp")
    assert from_view.upsert(record.index_view(), text, "stamp")
    from_json.close()
    from_view.close()
    a, b = _rows(tmp_path / "a.sqlite"), _rows(tmp_path / "b.sqlite")
    assert a == b
    assert len(a[0]) == 1 and len(a[1]) == 2 and len(a[2]) == 2
    loss = next(r for r in a[2] if r[0] == "loss")
    assert loss[2:] == (None, None, 0.5, 2.0, 3)  # SQLite stores a NaN last as NULL


def test_a_batch_never_moves_a_revision_backwards(tmp_path: Path) -> None:
    index = Index(tmp_path / "i.sqlite")
    new = _record()
    old = new.model_copy(update={"revision": 2, "name": "old", "tags": ["z"]})
    newer_text, old_text = new.to_json(), old.to_json()
    assert index.upsert_many([(new.index_view(), newer_text, "s1")]) == 1
    other = new.model_copy(update={"experiment_id": "0194c2aa000000001234", "revision": 1})
    written = index.upsert_many(
        [(old.index_view(), old_text, "s0"), (other.index_view(), other.to_json(), "s2")]
    )
    assert written == 1  # the other run only
    assert index.record(new.experiment_id)["name"] == "bert"
    assert index.stamps() == {new.experiment_id: "s1", other.experiment_id: "s2"}
    tags = index._read("SELECT tag FROM tags WHERE id = ? ORDER BY tag", (new.experiment_id,))
    assert [t[0] for t in tags] == ["a", "b"]
    # Within one batch, the newest revision of a record wins whatever the order.
    newest = new.model_copy(update={"revision": 9, "name": "newest"})
    assert index.upsert_many([(newest.index_view(), newest.to_json(), "s9"),
                              (new.index_view(), newer_text, "s1")]) == 1  # fmt: skip
    assert index.record(new.experiment_id)["name"] == "newest"
    index.close()


def test_atomic_write_returns_the_stamp_of_the_file_it_wrote(tmp_path: Path) -> None:
    dest = tmp_path / "r.json"
    first = atomic_write(dest, "one", fsync=False)
    assert file_stamp(first) == file_stamp(dest.stat())
    second = atomic_write(str(dest), b"two!")
    assert file_stamp(second) == file_stamp(dest.stat()) != file_stamp(first)
    assert dest.read_bytes() == b"two!"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
