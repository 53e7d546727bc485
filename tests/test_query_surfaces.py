"""The same filter string in every place that takes one: ``tracker.list/find_best``,
``coralx exp list/best --where``, the viewer's runs API; DataFrames and CSV; the index's
typed tables and their rebuild."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from coralx import Repository
from coralx.cli.main import cli
from coralx.errors import MissingDependency
from coralx.experiments import ExperimentTracker
from coralx.records.index import SCHEMA

WHERE = "params.opt.lr < 0.05 and metrics.val_loss.min <= 0.5 and (tags.bert or name glob 'g*')"


@pytest.fixture
def tracker(repo: Repository, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ExperimentTracker:
    monkeypatch.chdir(tmp_path)
    tracker = ExperimentTracker(repo, capture_code=False)
    specs = [
        ("bert-a", ["bert"], {"opt": {"lr": 0.1}, "seed": 1}, [0.9, 0.6], "completed"),
        ("bert-b", ["bert", "big"], {"opt": {"lr": 0.01}, "seed": 2}, [0.8, 0.4], "completed"),
        ("gpt-a", ["gpt"], {"opt": {"lr": 0.001}, "seed": 3}, [0.7, 0.3], "completed"),
        ("gpt-dead", ["gpt"], {"opt": {"lr": 0.001}, "seed": 4}, [0.1], "failed"),
        ("other", [], {"opt": {"lr": 0.001}, "seed": "x"}, [0.2], "completed"),
    ]
    for name, tags, params, losses, status in specs:
        tracker.start(name, params=params, tags=tags)
        for step, v in enumerate(losses):
            tracker.log("val_loss", v, step=step)
            tracker.log("val_acc", 1 - v, step=step)
        tracker.end(status=status)
    tracker.get_summary()  # index rows written before the CLI opens the index
    return tracker


def _names(rows: list) -> list[str]:
    return [r.name if hasattr(r, "name") else r["name"] for r in rows]


def _cli(repo: Repository, *args: str) -> str:
    result = CliRunner().invoke(cli, ["-C", str(repo.root), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_one_string_everywhere(tracker: ExperimentTracker, repo: Repository) -> None:
    from starlette.testclient import TestClient

    from coralx.web.app import create_app

    want = {"bert-b", "gpt-a", "gpt-dead"}
    assert set(_names(tracker.list(where=WHERE))) == want
    listed = json.loads(_cli(repo, "exp", "list", "--where", WHERE, "--format", "json"))
    assert set(_names(listed)) == want
    with TestClient(create_app(repo)) as client:
        page = client.get("/api/runs", params={"where": WHERE}).json()
    assert {r["name"] for r in page["rows"]} == want
    # find_best: the same filter, and only completed runs rank by default.
    best = tracker.find_best("val_loss", where=WHERE)
    assert _names(best) == ["gpt-a", "bert-b"]
    cli_best = json.loads(
        _cli(repo, "exp", "best", "--metric", "val_loss", "--where", WHERE, "--json")
    )
    assert _names(cli_best) == ["gpt-a", "bert-b"]


def test_find_best_ranks_completed_runs_unless_told(
    tracker: ExperimentTracker, repo: Repository
) -> None:
    assert _names(tracker.find_best("val_loss", limit=2)) == ["other", "gpt-a"]
    assert _names(tracker.find_best("val_loss", status="any", limit=1)) == ["gpt-dead"]
    assert _names(tracker.find_best("val_loss", status="failed")) == ["gpt-dead"]
    assert _names(tracker.find_best("val_loss", where="status != 'completed'")) == ["gpt-dead"]
    out = _cli(repo, "exp", "best", "--metric", "val_loss", "--limit", "1")
    assert "other" in out and "gpt-dead" not in out
    out = _cli(repo, "exp", "best", "--metric", "val_loss", "--status", "any", "--limit", "1")
    assert "gpt-dead" in out


def test_several_sort_keys(tracker: ExperimentTracker, repo: Repository) -> None:
    got = tracker.list(sort=["params.opt.lr", "-metrics.val_acc.max"])
    assert _names(got) == ["gpt-dead", "other", "gpt-a", "bert-b", "bert-a"]
    listed = json.loads(
        _cli(
            repo, "exp", "list", "--sort", "-params.opt.lr", "--sort", "metrics.val_loss", "--json"
        )
    )
    assert _names(listed) == ["bert-a", "bert-b", "gpt-dead", "other", "gpt-a"]
    table = _cli(repo, "exp", "list", "--where", "tags.bert", "--sort", "-metrics.val_acc.max")
    assert "metrics.val_acc.max" in table.splitlines()[0] and "2 runs" in table


def test_mixed_types_compare_as_their_own_type(tracker: ExperimentTracker) -> None:
    assert _names(tracker.list(where="params.seed = 'x'")) == ["other"]
    assert len(tracker.list(where="params.seed > 0")) == 4  # the string seed is not a number
    assert len(tracker.list(where="not params.seed > 0")) == 1
    assert tracker.list(where="params.missing = 1 or params.missing != 1") == []


def test_errors_reach_the_cli_with_the_column(tracker: ExperimentTracker, repo: Repository) -> None:
    result = CliRunner().invoke(
        cli, ["-C", str(repo.root), "exp", "list", "--where", "tags.bert and"]
    )
    assert result.exit_code == 2
    assert "column 14" in result.output and "expected a field" in result.output


def test_csv_and_table_formats(tracker: ExperimentTracker, repo: Repository) -> None:
    text = _cli(repo, "exp", "list", "--where", "tags.bert", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["name"] for r in rows} == {"bert-a", "bert-b"}
    row = next(r for r in rows if r["name"] == "bert-b")
    assert row["params.opt.lr"] == "0.01" and float(row["metrics.val_loss"]) == 0.4
    assert float(row["metrics.val_loss.min"]) == 0.4 and row["metrics.val_loss.count"] == "2.0"
    assert json.loads(row["tags"]) == ["bert", "big"]
    assert _cli(repo, "exp", "list", "--json") == _cli(repo, "exp", "list", "--format", "json")


def test_to_dataframe(tracker: ExperimentTracker) -> None:
    df = tracker.to_dataframe("tags.bert", sort="name")
    assert list(df["name"]) == ["bert-a", "bert-b"]
    for col in ("run_id", "status", "start_time", "end_time", "tags", "params.opt.lr",
                "params.seed", "metrics.val_loss", "metrics.val_acc.max"):  # fmt: skip
        assert col in df.columns, col
    assert list(df["metrics.val_loss"]) == [0.6, 0.4]  # the last value, as MLflow's
    assert str(df["start_time"].dtype).startswith("datetime64")
    hist = tracker.to_dataframe("name = 'gpt-a'", metrics="history")
    assert list(hist.columns) == ["run_id", "name", "key", "step", "value", "timestamp"]
    assert sorted(hist[hist.key == "val_loss"]["value"]) == [0.3, 0.7]
    assert tracker.to_dataframe("tags.none").empty


def test_to_dataframe_without_pandas_names_the_extra(
    tracker: ExperimentTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(MissingDependency, match=r"coralx\[pandas\]"):
        tracker.to_dataframe()


def test_compare_mode_stars(tracker: ExperimentTracker, repo: Repository) -> None:
    ids = [e.experiment_id for e in tracker.list(where="tags.bert", sort="name")]
    result = tracker.compare(ids)
    assert result["modes"] == {"val_acc": "max", "val_loss": "min"}
    assert result["best"]["val_acc"]["run"] == ids[1]  # bert-b has the higher accuracy
    out = _cli(repo, "exp", "compare", *ids)
    assert "val_acc (max, guessed)" in out
    acc = next(line for line in out.splitlines() if "val_acc" in line)
    assert acc.count("*") == 1 and "/ 0.6*" in acc  # bert-b's highest accuracy is starred
    out = _cli(repo, "exp", "compare", *ids, "--mode", "val_acc=min")
    assert "val_acc (min)" in out


def test_lineage_through_the_engine(tracker: ExperimentTracker) -> None:
    root = tracker.list(where="name = 'bert-a'")[0]
    child = tracker.resume(root.experiment_id)
    tracker.end()
    grandchild = tracker.resume(child.experiment_id)
    tracker.end()
    assert [e.experiment_id for e in tracker.lineage(grandchild.experiment_id)] == [
        root.experiment_id, child.experiment_id, grandchild.experiment_id,
    ]  # fmt: skip
    tree = tracker.descendants(root.experiment_id[:18])
    assert tree["children"][0]["id"] == child.experiment_id
    assert tree["children"][0]["children"][0]["id"] == grandchild.experiment_id
    assert tracker.list(where=f"parent = '{child.experiment_id}'")[0].name.endswith("resumed")


def test_old_index_is_rebuilt_with_typed_params(
    tracker: ExperimentTracker, repo: Repository
) -> None:
    path = repo.path / "index.sqlite"
    tracker._store.index.close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE params")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    fresh = ExperimentTracker(Repository(repo.root), capture_code=False)
    assert set(_names(fresh.list(where="params.opt.lr <= 0.01"))) == {
        "bert-b",
        "gpt-a",
        "gpt-dead",
        "other",
    }
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA
    kinds = dict(conn.execute("SELECT key, kind FROM params WHERE num = 0.01 OR text = 'x'"))
    conn.close()
    assert kinds == {"opt.lr": "n", "seed": "s"}


def test_reindex_reports_progress(tracker: ExperimentTracker, repo: Repository) -> None:
    seen: list[tuple[int, int]] = []
    result = tracker.reindex(lambda done, total: seen.append((done, total)))
    assert result["records"] == 5 and seen[-1] == (5, 5)
    assert set(_names(tracker.list(where=WHERE))) == {"bert-b", "gpt-a", "gpt-dead"}
    out = CliRunner().invoke(cli, ["-C", str(repo.root), "reindex"])
    assert out.exit_code == 0 and "indexed 5 runs" in out.output


def test_viewer_uses_the_index_when_in_step_with_the_same_answers(
    tracker: ExperimentTracker, repo: Repository
) -> None:
    """With an index that saw the records as they are, the viewer asks SQL; without, it
    matches in memory; the pages are the same."""
    import os
    import time

    from coralx.records import query as q
    from coralx.web.data import ViewerData
    from coralx.web.records import RunQuery

    folder = repo.path / "experiments"
    past = time.time() - 10
    os.utime(folder, (past, past))  # settled: sync records the folder's mtime
    tracker._store.sync(force=True)
    data = ViewerData(repo)
    cache = data.records
    cache.rows()
    queries = [
        RunQuery(where=WHERE, sort="metrics.val_loss.min", descending=False),
        RunQuery(where="not tags.bert", sort="params.seed"),
        RunQuery(tags=["gpt"], name="gpt-*", sort="created_at"),
        RunQuery(params=["opt.lr=0.001"], sort="name", descending=False),
    ]
    for query in queries:
        via_index = cache._from_index(query.filter(), query.sort_keys(), time.time(), 5)
        assert via_index is not None  # the index path really ran
        memory = q.sort_facts(
            [r for r in cache.rows() if query.matches(r)], query.sort_keys(), lambda r: r.facts
        )
        assert [r.id for r in via_index] == [r.id for r in memory], query
        page = data.runs(query)
        assert [r["id"] for r in page["rows"]] == [r.id for r in memory]
    # A record written since the index last saw the folder: the viewer does not trust it.
    tracker.start("late")
    tracker.end()
    cache.rows()
    assert cache._from_index(q.parse_filter(None), [], time.time(), 6) is None
    assert data.runs(RunQuery(name="late"))["total"] == 1


def test_viewer_leaves_the_index_unchanged(tracker: ExperimentTracker, repo: Repository) -> None:
    import hashlib
    import os
    import time

    from starlette.testclient import TestClient

    from coralx.web.app import create_app

    folder = repo.path / "experiments"
    past = time.time() - 10
    os.utime(folder, (past, past))
    tracker._store.sync(force=True)
    tracker._store.index.close()
    files = sorted(repo.path.glob("index.sqlite*"))

    def digest() -> list[tuple[str, str]]:
        return [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in files]

    before = digest()
    with TestClient(create_app(repo)) as client:
        for where in (WHERE, "tags.gpt", "params.seed = 'x'"):
            assert client.get("/api/runs", params={"where": where}).status_code == 200
    assert digest() == before


def test_every_field_of_a_live_write_reaches_the_index(tracker: ExperimentTracker) -> None:
    """The index rows a running process writes (from the record model, not the file) hold the
    same fields as a rebuild from the files: duration, created, branch, sweep, parent."""
    texts = [
        "duration >= 0",
        "duration < 3600",
        "created > '2020-01-01'",
        "not parent",
        "not sweep",
        "id like '0%'",
    ]
    live = {t: set(_names(tracker.list(where=t))) for t in texts}
    tracker.reindex()
    rebuilt = {t: set(_names(tracker.list(where=t))) for t in texts}
    assert live == rebuilt
    assert live["duration >= 0"] == {"bert-a", "bert-b", "gpt-a", "gpt-dead", "other"}


def _index_dump(path: Path) -> dict[str, list]:
    conn = sqlite3.connect(path)
    try:
        return {
            table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in ("experiments", "tags", "params", "metrics")
        }
    finally:
        conn.close()


def test_reindex_with_worker_processes_builds_the_same_index(
    tracker: ExperimentTracker, repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coralx.records import index as index_module
    from coralx.records.store import load_for_index

    folder = repo.path / "experiments"
    damaged = sorted(folder.glob("*.json"))[0]
    damaged.write_text(damaged.read_text().replace('"name"', '"nome"', 1))
    store = tracker._store
    store.reindex()
    alone = _index_dump(repo.path / "index.sqlite")
    # Chunks of 2 records: the 5 records go through 3 chunks in 2 forked workers.
    monkeypatch.setattr(index_module, "_CHUNK", 2)
    result = store.index.rebuild(folder, load_for_index, workers=2)
    assert result["indexed"] == 4 and result["unreadable"] == 1
    assert result["recoverable"] == [damaged.stem]
    assert damaged.name in result["unreadable_files"][0]
    assert _index_dump(repo.path / "index.sqlite") == alone
    assert len(tracker.list()) == 5  # the damaged run kept its last indexed copy


def test_a_reindex_that_stops_midway_leaves_the_old_index(
    tracker: ExperimentTracker, repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coralx import _fs
    from coralx.records import index as index_module

    before = _index_dump(repo.path / "index.sqlite")
    # A build left behind by a process that was killed: removed by the next reindex.
    dead = repo.path / f"{_fs.TEMP_PREFIX}index.sqlite.leftover"
    dead.write_bytes(b"half an index")
    monkeypatch.setattr(_fs, "temp_writer_alive", lambda name: name != dead.name)
    monkeypatch.setattr(index_module, "_CHUNK", 2)

    def interrupted(done: int, total: int) -> None:
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tracker.reindex(interrupted)
    assert _index_dump(repo.path / "index.sqlite") == before
    assert not list(repo.path.glob(f"{_fs.TEMP_PREFIX}*"))  # its own build and the dead one
    assert set(_names(tracker.list(where=WHERE))) == {"bert-b", "gpt-a", "gpt-dead"}


def test_a_process_with_the_old_index_open_follows_the_new_one(
    tracker: ExperimentTracker, repo: Repository
) -> None:
    other = ExperimentTracker(Repository(repo.root), capture_code=False)
    assert len(other.list()) == 5
    tracker.reindex()
    tracker.start("after")
    tracker.end()
    tracker.get_summary()
    assert len(other.list()) == 6


def test_the_viewer_keeps_its_index_connection_and_follows_a_reindex(
    tracker: ExperimentTracker, repo: Repository
) -> None:
    import os
    import time

    from coralx.web.records import RecordCache, RunQuery

    folder = repo.path / "experiments"
    past = time.time() - 10
    os.utime(folder, (past, past))
    tracker._store.sync(force=True)
    cache = RecordCache(repo.path)
    query = RunQuery(where=WHERE, sort="metrics.val_loss.min", descending=False)
    flt, keys = query.filter(), query.sort_keys()
    first = cache._from_index(flt, keys, time.time(), len(cache.rows()))
    assert first is not None and cache._index is not None
    conn = cache._index[1]
    assert cache._from_index(flt, keys, time.time(), 5) is not None
    assert cache._index[1] is conn  # the same connection (and its page cache), query after query
    tracker.reindex()  # a new index file renamed into place
    again = cache._from_index(flt, keys, time.time(), 5)
    assert again is not None and cache._index[1] is not conn
    assert [r.id for r in again] == [r.id for r in first]


def test_a_filter_of_several_tests_is_driven_by_the_rarest(
    tracker: ExperimentTracker, repo: Repository
) -> None:
    from coralx.records import query as q

    index = tracker._store.index
    # val_loss.min <= 0.5 holds for 4 runs, opt.lr < 0.05 for 4, tags.big for 1.
    flt = q.parse_filter(f"{WHERE} and tags.big and metrics.val_loss.min <= 0.5")
    source, cond, args = flt.source(now=0.0, count=index.count_rows)
    assert source.startswith("tags t CROSS JOIN experiments e"), source
    driven = {r[0] for r in index._read(f"SELECT e.id FROM {source} WHERE {cond}", args)}
    plain, plain_args = flt.sql(now=0.0)
    listed = {
        r[0] for r in index._read(f"SELECT e.id FROM experiments e WHERE {plain}", plain_args)
    }
    assert driven == listed and len(driven) == 1
    assert _names(tracker.list(where=f"{WHERE} and tags.big")) == ["bert-b"]
