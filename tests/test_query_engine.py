"""The one query engine (``coralx.records.query``): the SQL path over the index, the in-memory
path, and a brute-force scan written here from the language's rules agree on every filter.

The filters are generated together with their meaning: each generated atom carries its text
and a plain Python predicate over the raw record, and ``and``/``or``/``not`` combine both, so
the oracle never goes through the parser or the engine's own record reading.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coralx.errors import AmbiguousRevision, ExperimentNotFound, InvalidValue
from coralx.records import query as q
from coralx.records.index import Index

NOW = 1_800_000_000.0
Pred = Callable[[dict[str, Any]], bool]
MISSING = object()

# -- records --------------------------------------------------------------------------------------

NAMES = ["bert-a", "bert-b", "Bert-C", "gpt", "[odd]", "a%b", "a_b", "x"]
METRIC_VALUES = st.one_of(
    st.none(),
    st.sampled_from([0.0, 0.25, 0.5, 1.0, -1.0, "NaN", "Infinity", "-Infinity"]),
)


@st.composite
def records(draw: Any) -> list[dict[str, Any]]:
    n = draw(st.integers(min_value=0, max_value=8))
    out = []
    for i in range(n):
        eid = f"{i:04x}" + draw(st.sampled_from(["a", "b"])) * 16
        created = 1_700_000_000 + draw(st.integers(0, 4)) * 1000
        status = draw(st.sampled_from(q.STATUSES))
        started = draw(st.one_of(st.none(), st.just(created + 10)))
        ended = (
            None if started is None or status == "running" else started + draw(st.integers(0, 99))
        )
        params: dict[str, Any] = {}
        for key, values in (
            ("lr", [0.1, 0.01, 1, 0.001]),
            ("opt", ["adam", "sgd", "Adam"]),
            ("flag", [True, False]),
            ("x", [1, "1", "a", 2.5, None, [1, 2]]),
        ):
            if draw(st.booleans()):
                params[key] = draw(st.sampled_from(values))
        if draw(st.booleans()):
            params["model"] = {"width": draw(st.sampled_from([16, 32, 64]))}
        summary = {}
        for metric in ("loss", "acc"):
            if draw(st.booleans()):
                summary[metric] = {
                    "last": draw(METRIC_VALUES),
                    "min": draw(st.one_of(st.none(), st.sampled_from([0.0, 0.25, 0.5]))),
                    "max": draw(st.one_of(st.none(), st.sampled_from([0.5, 1.0, 2.0]))),
                    "count": draw(st.integers(0, 3)),
                }
        out.append(
            {
                "experiment_id": eid,
                "name": draw(st.sampled_from(NAMES)),
                "status": status,
                "created_at": _iso(created),
                "started_at": _iso(started),
                "ended_at": _iso(ended),
                "branch": draw(st.sampled_from([None, "main", "dev"])),
                "code": {"commit": draw(st.sampled_from([None, "c" * 40, "d" * 40]))},
                "sweep": draw(st.sampled_from([None, {"sweep_id": "5" * 20}])),
                "parent_experiment": draw(st.sampled_from([None, "0000" + "a" * 16])),
                "tags": draw(st.lists(st.sampled_from(["a", "b", "c-d"]), unique=True)),
                "params": params,
                "metrics_summary": summary,
                "revision": 1,
            }
        )
    return out


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


# -- the oracle: each rule of the language, written plainly ---------------------------------------


def _param(rec: dict[str, Any], path: str) -> Any:
    value: Any = rec["params"]
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def _typed(value: Any, want: Any) -> bool:
    """A stored value and a literal have the same type: numbers, strings or booleans."""
    if isinstance(want, bool) or isinstance(value, bool):
        return isinstance(want, bool) and isinstance(value, bool)
    if isinstance(want, int | float):
        return isinstance(value, int | float) and not math.isnan(value)
    return isinstance(value, str)


_SYMBOLS = ["=", "!=", "<", "<=", ">", ">="]
_FUNCS = [operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge]
OPS: dict[str, Callable[[Any, Any], bool]] = dict(zip(_SYMBOLS, _FUNCS, strict=True))


def _metric(rec: dict[str, Any], name: str, stat: str) -> Any:
    s = rec["metrics_summary"].get(name)
    if s is None or s.get(stat) is None:
        return MISSING
    value = float(s[stat])  # "NaN", "Infinity" are how JSON records keep them
    return MISSING if math.isnan(value) else value


def _like(pattern: str, text: str, fold: bool = False) -> bool:
    """SQL LIKE by dynamic programming (not the engine's regex translation)."""
    if fold:
        pattern, text = pattern.lower(), text.lower()
    memo: dict[tuple[int, int], bool] = {}

    def go(i: int, j: int) -> bool:
        if (i, j) not in memo:
            if i == len(pattern):
                memo[i, j] = j == len(text)
            elif pattern[i] == "%":
                memo[i, j] = go(i + 1, j) or (j < len(text) and go(i, j + 1))
            else:
                ok = j < len(text) and (pattern[i] == "_" or pattern[i] == text[j])
                memo[i, j] = ok and go(i + 1, j + 1)
        return memo[i, j]

    return go(0, 0)


def _glob(pattern: str, text: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(text, pattern)


def _ts(text: str | None) -> float | None:
    return None if text is None else datetime.fromisoformat(text).timestamp()


def _duration(rec: dict[str, Any]) -> Any:
    started = _ts(rec["started_at"])
    if started is None:
        return MISSING
    ended = _ts(rec["ended_at"])
    return (ended if ended is not None else NOW) - started


def _lit(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def _cmp(get: Callable[[dict[str, Any]], Any], op: str, want: Any) -> Pred:
    def pred(rec: dict[str, Any]) -> bool:
        have = get(rec)
        return have is not MISSING and _typed(have, want) and OPS[op](have, want)

    return pred


OP = st.sampled_from(list(OPS))


@st.composite
def atoms(draw: Any) -> tuple[str, Pred]:
    choice = draw(st.integers(0, 14))
    op = draw(OP)
    if choice == 0:
        v = draw(st.sampled_from([0.1, 0.01, 1, 0.001, 0.05]))
        return f"params.lr {op} {_lit(v)}", _cmp(lambda r: _param(r, "lr"), op, v)
    if choice == 1:
        v = draw(st.sampled_from(["adam", "sgd", "Adam", "b"]))
        return f"params.opt {op} {_lit(v)}", _cmp(lambda r: _param(r, "opt"), op, v)
    if choice == 2:
        v = draw(st.sampled_from([1, "1", "a", 2.5, True]))
        return f"params.x {op} {_lit(v)}", _cmp(lambda r: _param(r, "x"), op, v)
    if choice == 3:
        v = draw(st.sampled_from([16, 32, 64]))
        return f"params.model.width {op} {v}", _cmp(lambda r: _param(r, "model.width"), op, v)
    if choice == 4:
        v = draw(st.booleans())
        return f"params.flag = {_lit(v)}", _cmp(lambda r: _param(r, "flag"), "=", v)
    if choice == 5:
        name = draw(st.sampled_from(["loss", "acc"]))
        stat = draw(st.sampled_from(["", ".last", ".min", ".max", ".count"]))
        v = draw(st.sampled_from([0.0, 0.25, 0.5, 1, 2, -1e9, 1e9]))
        s = stat[1:] or "last"
        return f"metrics.{name}{stat} {op} {v}", _cmp(lambda r: _metric(r, name, s), op, v)
    if choice == 6:
        tag = draw(st.sampled_from(["a", "b", "c-d", "zz"]))
        return f"tags.{tag}", lambda r: tag in r["tags"]
    if choice == 7:
        kind = draw(st.sampled_from(["like", "ilike", "glob"]))
        if kind == "glob":
            p = draw(st.sampled_from(["bert-*", "[[]odd]", "?pt", "*", "a%b"]))
            match = _glob
        else:
            p = draw(st.sampled_from(["bert-%", "a\\%b", "a_b", "%", "b%", "BERT%", "a%b"]))

            def match(pat: str, text: str, k: str = kind) -> bool:
                return _like(pat, text, fold=k == "ilike")

        neg = draw(st.booleans())
        text = f"name {'not ' if neg else ''}{kind} {_lit(p)}"
        return text, lambda r: match(p, r["name"]) != neg
    if choice == 8:
        v = draw(st.sampled_from(q.STATUSES))
        return f"status {op} '{v}'", _cmp(lambda r: r["status"], op, v)
    if choice == 9:
        vs = draw(st.lists(st.sampled_from(q.STATUSES), min_size=1, max_size=3))
        return f"status in ({', '.join(_lit(v) for v in vs)})", lambda r: r["status"] in vs
    if choice == 10:
        v = 1_700_000_000 + draw(st.integers(0, 4)) * 1000
        return f"created {op} {v}", _cmp(lambda r: _ts(r["created_at"]), op, v)
    if choice == 11:
        v = draw(st.sampled_from([0, 10, 50, 99, 1e9]))
        return f"duration {op} {v}", _cmp(_duration, op, v)
    if choice == 12:
        v = draw(st.sampled_from(["main", "dev", "x"]))
        return f"branch {op} '{v}'", _cmp(lambda r: r["branch"] or MISSING, op, v)
    if choice == 13:
        attr = draw(st.sampled_from(["parent", "sweep", "commit", "branch"]))
        get = {
            "parent": lambda r: r["parent_experiment"],
            "sweep": lambda r: (r["sweep"] or {}).get("sweep_id"),
            "commit": lambda r: r["code"]["commit"],
            "branch": lambda r: r["branch"],
        }[attr]
        return attr, lambda r: get(r) is not None
    vs = draw(st.lists(st.sampled_from([0.1, 1, "adam", "1", True]), min_size=1, max_size=3))
    key = draw(st.sampled_from(["lr", "opt", "x", "flag"]))

    def inside(r: dict[str, Any]) -> bool:
        have = _param(r, key)
        return have is not MISSING and any(_typed(have, v) and have == v for v in vs)

    return f"params.{key} in ({', '.join(_lit(v) for v in vs)})", inside


def _combine(children: Any) -> Any:
    def both(pair: Any, op: str) -> tuple[str, Pred]:
        (ta, pa), (tb, pb) = pair
        if op == "and":
            return f"{ta} and {tb}", lambda r: pa(r) and pb(r)
        return f"({ta} or {tb})", lambda r: pa(r) or pb(r)

    return st.one_of(
        st.tuples(children, children).map(lambda p: both(p, "and")),
        st.tuples(children, children).map(lambda p: both(p, "or")),
        children.map(lambda c: (f"not ({c[0]})", lambda r, p=c[1]: not p(r))),
    )


FILTERS = st.recursive(atoms(), _combine, max_leaves=6)
SORTS = st.lists(
    st.sampled_from(
        ["params.lr", "-params.lr", "params.x", "-params.x", "metrics.loss", "-metrics.acc.max",
         "loss", "-acc", "name", "-created", "duration", "status", "-params.model.width"]
    ),
    max_size=3,
)  # fmt: skip


def _index(tmp: Path, recs: list[dict[str, Any]]) -> Index:
    index = Index(tmp / "index.sqlite")
    index.upsert_many((r, json.dumps(r), "s") for r in recs)
    return index


SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@SETTINGS
@given(recs=records(), flt=FILTERS, sort=SORTS)
def test_sql_memory_and_scan_agree(
    tmp_path_factory: Any, recs: list[dict[str, Any]], flt: tuple[str, Pred], sort: list[str]
) -> None:
    text, pred = flt
    parsed = q.parse_filter(text)
    index = _index(tmp_path_factory.mktemp("q"), recs)
    try:
        keys = q.parse_sort(sort)
        sql_ids = [r[0] for r in index.select(parsed, sort=keys, columns="e.id", now=NOW)]
        # find_best's form of the same filter (correlated lookups) keeps the same runs, and
        # so does the form with a list of runs for every test (no test chosen to drive).
        other_ids = []
        for style in ("exists", "in"):
            cond, args = parsed.sql(now=NOW, style=style)
            sql = f"SELECT e.id FROM experiments e WHERE {cond}"
            other_ids.append({r[0] for r in index._read(sql, args)})
    finally:
        index.close()
    memory = [r for r in recs if parsed.matches(r, now=NOW)]
    scan = {r["experiment_id"] for r in recs if pred(r)}
    assert set(sql_ids) == scan, text
    assert other_ids == [scan, scan], text
    assert {r["experiment_id"] for r in memory} == scan, text
    ordered = q.sort_facts([q.facts(r) for r in memory], keys, lambda f: f, NOW)
    assert sql_ids == [f.id for f in ordered], (text, sort)


@settings(max_examples=100, deadline=None)
@given(recs=records(), flt=FILTERS)
def test_memory_path_alone(recs: list[dict[str, Any]], flt: tuple[str, Pred]) -> None:
    """More examples of the in-memory path against the oracle (no index to build: fast)."""
    parsed = q.parse_filter(flt[0])
    for r in recs:
        assert parsed.matches(r, now=NOW) == flt[1](r), flt[0]


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "column", "expected"),
    [
        ("params.lr <", 12, "expected a value"),
        ("params.lr < 1 and", 18, "expected a field"),
        ("(tags.a or tags.b", 18, "')' to close the '(' at column 1"),
        ("name = 3", 8, "name is text"),
        ("metrics.loss = 'low'", 16, "is a number"),
        ("status = 'done'", 10, "unknown status"),
        ("speed > 3", 1, "unknown field 'speed'"),
        ("name = 'abc", 8, "never closes"),
        ("tags.a = 1", 8, "tags have no values"),
        ("params.lr 3", 11, "expected an operator"),
        ("params.lr = 1 params.x = 2", 15, "expected 'and', 'or'"),
        ("name like bert", 11, "quoted pattern"),
        ("created > 'yesterday'", 11, "not a time"),
        ("params.lr ; DROP TABLE experiments", 11, "unexpected character ';'"),
    ],
)
def test_syntax_errors_point_at_the_column(text: str, column: int, expected: str) -> None:
    with pytest.raises(q.FilterSyntaxError) as info:
        q.parse_filter(text)
    assert info.value.column == column, str(info.value)
    assert expected in str(info.value)
    caret_line = str(info.value).splitlines()[-1]
    assert caret_line.index("^") - 2 == column - 1  # the caret stands under the column


HOSTILE = [
    "'; DROP TABLE experiments; --",
    "x' OR '1'='1",
    'a"b',
    "nul\x00byte",
    "\\",
    "%' --",
    "é🙂",
    "y" * 10_000,
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_are_bound_never_spliced(tmp_path: Path, value: str) -> None:
    recs = [
        {"experiment_id": "1" * 20, "name": value, "status": "completed", "tags": [value],
         "params": {"opt": value, value: 1}, "metrics_summary": {value: {"last": 1.0}}},
        {"experiment_id": "2" * 20, "name": "plain", "status": "completed", "tags": [],
         "params": {"opt": "adam"}, "metrics_summary": {}},
    ]  # fmt: skip
    index = _index(tmp_path, recs)
    quoted = "'" + value.replace("'", "''") + "'"
    key = "`" + value.replace("`", "``") + "`"
    for text in (
        f"name = {quoted}",
        f"params.opt = {quoted}",
        f"params.{key} = 1",
        f"tags.{key}",
        f"metrics.{key} = 1",
        f"name like {quoted} or name glob {quoted}",
    ):
        if "%" in value and "like" in text:
            continue  # a wildcard in the value is a pattern; the equality cases cover it
        flt = q.parse_filter(text)
        cond, _args = flt.sql(now=NOW)
        assert value not in cond  # the value went in as a bound parameter
        got = [r[0] for r in index.select(flt, columns="e.id")]
        assert got == ["1" * 20], text
        assert [r["experiment_id"] for r in recs if flt.matches(r)] == got
    assert index.count() == 2  # nothing was dropped
    index.close()


def test_limits_of_filter_strings() -> None:
    with pytest.raises(InvalidValue, match="at most"):
        q.parse_filter("name = 'x'" + " " * q.MAX_FILTER_CHARS)
    with pytest.raises(q.FilterSyntaxError, match="wildcards"):
        q.parse_filter("name like '" + "%a" * 40 + "'")
    assert q.parse_filter("").matches({"experiment_id": "1", "name": "x"})
    with pytest.raises(InvalidValue, match="a filter is a string"):
        q.parse_filter(3)  # type: ignore[arg-type]


def test_sort_keys() -> None:
    keys = q.parse_sort(["-metrics.acc.max", "params.lr", "val_loss", "-accuracy", "created"])
    assert [(str(k.fld), k.descending) for k in keys] == [
        ("metrics.acc.max", True),
        ("params.lr", False),
        ("metrics.val_loss.min", False),
        ("metrics.accuracy.max", True),
        ("created", False),
    ]
    with pytest.raises(InvalidValue, match="cannot sort by a tag"):
        q.parse_sort("tags.bert")


# -- the other pieces -----------------------------------------------------------------------------


def test_resolve_prefix() -> None:
    ids = sorted(["01a2" + "0" * 16, "01a3" + "0" * 16, "ffff" + "1" * 16])
    lookup = q.prefix_lookup(ids)
    assert q.resolve_prefix("f", lookup) == ids[2]  # any length, no four-digit minimum
    assert q.resolve_prefix(" 01A3 ", lookup) == ids[1]
    with pytest.raises(AmbiguousRevision):
        q.resolve_prefix("01a", lookup)
    for bad in ("", "xyz", "0" * 21, "01a2/../"):
        with pytest.raises(ExperimentNotFound):
            q.resolve_prefix(bad, lookup)


def test_lineage_walks_stop_at_cycles_and_depth() -> None:
    parents = {"c": "b", "b": "a", "a": None, "x": "y", "y": "x"}
    assert q.ancestors("c", parents.get) == ["a", "b"]
    assert q.ancestors("x", parents.get) == ["y"]  # a cycle ends
    chain = {str(i): str(i + 1) for i in range(500)}
    assert len(q.ancestors("0", chain.get)) == q.LINEAGE_DEPTH
    kids: dict[str, list[str]] = {"a": ["b", "c"], "b": ["d"], "d": ["a"]}
    tree = q.descendants("a", lambda i: kids.get(i, []))
    assert tree == {
        "id": "a",
        "children": [
            {"id": "b", "children": [{"id": "d", "children": []}]},
            {"id": "c", "children": []},
        ],
    }
    deep = q.descendants("0", lambda i: [str(int(i) + 1)])
    depth = 0
    while deep["children"]:
        deep, depth = deep["children"][0], depth + 1
    assert depth == q.LINEAGE_DEPTH


@pytest.mark.parametrize(
    ("metric", "mode"),
    [("val_loss", "min"), ("val_acc", "max"), ("accuracy", "max"), ("eval/perplexity", "min"),
     ("f1", "max"), ("test_error", "min"), ("auc", "max"), ("reward_mean", "max"),
     ("weird", "min"), ("train.mse", "min")],
)  # fmt: skip
def test_guess_mode(metric: str, mode: str) -> None:
    assert q.guess_mode(metric) == mode


def test_compare_stars_follow_the_direction() -> None:
    a = {
        "experiment_id": "a",
        "params": {"lr": 0.1, "m": {"w": 1}},
        "metrics_summary": {"val_acc": {"min": 0.1, "max": 0.9}, "loss": {"min": 0.5, "max": 1}},
    }
    b = {"experiment_id": "b", "params": {"lr": 0.1, "m": {"w": 2}},
         "metrics_summary": {"val_acc": {"min": 0.2, "max": 0.5},
                             "loss": {"min": 0.2, "max": 3}}}  # fmt: skip
    out = q.compare_records([a, b])
    assert out["modes"] == {"loss": "min", "val_acc": "max"}
    assert out["best"]["val_acc"]["run"] == "a"  # the highest accuracy, not the lowest
    assert out["best"]["loss"]["run"] == "b"
    assert out["params"] == {"m.w": {"a": 1, "b": 2}}
    assert out["same"] == {"lr": 0.1}
    forced = q.compare_records([a, b], modes={"val_acc": "min"})
    assert forced["best"]["val_acc"]["run"] == "a" and forced["modes"]["val_acc"] == "min"


def test_status_lists_agree() -> None:
    from typing import get_args

    from coralx.experiments import ExperimentStatus
    from coralx.records.models import Status

    assert tuple(s.value for s in ExperimentStatus) == q.STATUSES
    assert get_args(Status) == q.STATUSES
