"""``list`` and ``find_best`` against a brute-force scan of the records (hypothesis)."""

from __future__ import annotations

import fnmatch
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coralx import Repository
from coralx.experiments import ExperimentTracker

VALUES = st.one_of(
    st.floats(min_value=-10, max_value=10, allow_nan=False, width=32),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 0.0, 1.0]),
)
RUN = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["bert-a", "bert-b", "gpt", "[odd]"]),
        "status": st.sampled_from(["completed", "failed", "cancelled"]),
        "tags": st.lists(st.sampled_from(["a", "b", "c"]), unique=True, max_size=3),
        "params": st.fixed_dictionaries(
            {"lr": st.sampled_from([0.1, 0.01, 1]), "opt": st.sampled_from(["adam", "sgd"])}
        ),
        "values": st.lists(VALUES, max_size=6),
    }
)
FILTERS = st.fixed_dictionaries(
    {
        "status": st.one_of(st.none(), st.sampled_from(["completed", "failed"])),
        "tags": st.one_of(
            st.none(),
            st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=2, unique=True),
        ),
        "tags_match": st.sampled_from(["all", "any"]),
        "name": st.one_of(st.none(), st.sampled_from(["bert-*", "gpt", "*", "[[]odd]"])),
        "params": st.one_of(
            st.none(), st.sampled_from([{"lr": 0.1}, {"lr": 1, "opt": "sgd"}, {"lr": 1.0}])
        ),
        "limit": st.one_of(st.none(), st.integers(min_value=0, max_value=4)),
    }
)


def _records(store: Path) -> list[dict[str, Any]]:
    folder = store / "experiments"
    return [json.loads(p.read_text()) for p in folder.glob("*.json")]


def _keep(rec: dict[str, Any], f: dict[str, Any]) -> bool:
    if f["status"] is not None and rec["status"] != f["status"]:
        return False
    if f["tags"]:
        have = [t in rec["tags"] for t in f["tags"]]
        if not (all(have) if f["tags_match"] == "all" else any(have)):
            return False
    if f["name"] is not None and not fnmatch.fnmatchcase(rec["name"], f["name"]):
        return False
    return not f["params"] or all(
        k in rec["params"] and rec["params"][k] == v for k, v in f["params"].items()
    )


def _build(tmp: str, runs: list[dict[str, Any]]) -> tuple[ExperimentTracker, dict[str, list]]:
    repo = Repository(Path(tmp) / "p", init=True)
    tracker = ExperimentTracker(repo, capture_code=False)
    logged: dict[str, list] = {}
    for spec in runs:
        exp = tracker.start(spec["name"], params=spec["params"], tags=spec["tags"])
        for step, value in enumerate(spec["values"]):
            tracker.log("m", value, step=step)
        tracker.end(status=spec["status"])
        logged[exp.experiment_id] = spec["values"]
    return tracker, logged


SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@SETTINGS
@given(runs=st.lists(RUN, max_size=6), f=FILTERS)
def test_list_matches_a_scan_of_the_records(runs: list[dict[str, Any]], f: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tracker, _ = _build(tmp, runs)
        got = [
            e.experiment_id
            for e in tracker.list(
                status=f["status"],
                tags=f["tags"],
                tags_match=f["tags_match"],
                name=f["name"],
                params=f["params"],
                limit=f["limit"],
            )
        ]
        records = _records(tracker.repo.path)
        want = sorted((r["experiment_id"] for r in records if _keep(r, f)), reverse=True)
        if f["limit"] is not None:
            want = want[: f["limit"]]
        assert got == want


@SETTINGS
@given(
    runs=st.lists(RUN, max_size=6),
    f=FILTERS,
    mode=st.sampled_from(["min", "max"]),
    by=st.sampled_from(["best", "last"]),
)
def test_find_best_matches_a_scan_of_the_history(
    runs: list[dict[str, Any]], f: dict[str, Any], mode: str, by: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tracker, logged = _build(tmp, runs)
        got = [
            (r["experiment_id"], r["best_value"])
            for r in tracker.find_best(
                "m",
                mode=mode,
                by=by,
                status=f["status"],
                tags=f["tags"],
                tags_match=f["tags_match"],
                name=f["name"],
                params=f["params"],
                limit=f["limit"],
            )
        ]
        ranked = []
        # find_best ranks only completed runs unless a status is given (issue 11).
        ranking = {**f, "status": f["status"] or "completed"}
        for rec in _records(tracker.repo.path):
            if not _keep(rec, ranking):
                continue
            values = logged[rec["experiment_id"]]
            candidates = values[-1:] if by == "last" else values
            finite = [float(v) for v in candidates if math.isfinite(v)]
            if not finite:
                continue
            best = min(finite) if mode == "min" else max(finite)
            ranked.append((best if mode == "min" else -best, rec["experiment_id"], best))
        ranked.sort()
        want = [(eid, value) for _, eid, value in ranked]
        if f["limit"] is not None:
            want = want[: f["limit"]]
        assert got == want


@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_tiny_stores(tmp_path: Path, n: int) -> None:
    spec = {"name": "x", "params": {}, "tags": [], "status": "completed", "values": [1.0]}
    tracker, _ = _build(str(tmp_path), [spec] * n)
    assert len(tracker.list()) == n
    assert len(tracker.find_best("m")) == n
