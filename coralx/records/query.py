"""Run queries: the one place that says which runs match, in what order, and how they compare.

Every caller (the tracker, the CLI through it, the viewer) asks this module. It holds:

- :data:`STATUSES`, the one list of run statuses;
- the filter language (:func:`parse_filter`), whose parsed :class:`Filter` compiles to SQL
  over the index (:meth:`Filter.sql`, every value a bound parameter) and also matches one
  record in memory (:meth:`Filter.matches`), with the same answer;
- sort keys (:func:`parse_sort`), applied by SQL (:func:`order_sql`) or in memory
  (:func:`sort_facts`);
- id-prefix resolution (:func:`resolve_prefix`), lineage (:func:`ancestors`,
  :func:`descendants`) and comparison (:func:`compare_records`, :func:`guess_mode`).

>>> f = parse_filter("params.lr < 1e-3 and metrics.val_loss.min <= 0.3 and tags.bert")
>>> f.matches({"experiment_id": "0" * 20, "name": "x", "status": "completed",
...            "params": {"lr": 1e-4}, "tags": ["bert"],
...            "metrics_summary": {"val_loss": {"min": 0.2}}})
True

The grammar is parsed by hand (recursive descent): no maintained Python library parses
MLflow's filter grammar into a tree we could check and compile with bound values (MLflow's own
parser is internal to MLflow, builds on sqlparse and renders SQL text itself), and the grammar
is small. See ``docs/cli.md``, "Filters", for the language.

This module imports only the standard library, so ``coralx exp list`` starts fast.
"""

from __future__ import annotations

import bisect
import fnmatch
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from ..errors import AmbiguousRevision, ExperimentNotFound, InvalidValue

__all__ = [
    "ATTRIBUTES",
    "LINEAGE_DEPTH",
    "STATUSES",
    "Facts",
    "Field",
    "Filter",
    "FilterSyntaxError",
    "SortKey",
    "ancestors",
    "check_statuses",
    "compare_records",
    "descendants",
    "facts",
    "from_keywords",
    "guess_mode",
    "order_sql",
    "parse_filter",
    "parse_param_pairs",
    "parse_sort",
    "parse_time",
    "resolve_prefix",
    "sort_facts",
    "timestamp",
]

STATUSES = ("pending", "running", "completed", "failed", "cancelled")
"""Every status a run can have, in the order of its life. ``ExperimentStatus`` and the record
model's ``Status`` spell the same values (a test checks they agree)."""

LINEAGE_DEPTH = 100
"""How many generations lineage walks up or down, so a cycle in damaged records ends."""

MAX_FILTER_CHARS = 100_000
MAX_WILDCARDS = 32  # per LIKE/GLOB pattern: many wildcards make matching slow

# The attributes the language knows, with their type and the index column holding them.
ATTRIBUTES: dict[str, tuple[str, str]] = {
    "id": ("text", "e.id"),
    "name": ("text", "e.name"),
    "status": ("text", "e.status"),
    "created": ("number", "e.created_ts"),
    "duration": ("number", ""),  # computed: (ended or now) - started
    "branch": ("text", "e.branch"),
    "commit": ("text", "e.code_commit"),
    "sweep": ("text", "e.sweep_id"),
    "parent": ("text", "e.parent"),
}
_ALIASES = {
    "run_id": "id",
    "run_name": "name",
    "experiment_id": "id",
    "created_at": "created",
    "start_time": "created",
    "sweep_id": "sweep",
    "parent_experiment": "parent",
    "code_commit": "commit",
}
_STATS = ("last", "min", "max", "count")


class FilterSyntaxError(InvalidValue):
    """A filter string that does not parse: says where (column, from 1) and what was expected."""

    def __init__(self, text: str, position: int, message: str) -> None:
        shown = text if len(text) <= 200 else text[max(0, position - 80) : position + 80]
        caret = position if len(text) <= 200 else min(position, 80)
        printable = shown.replace("\n", " ").replace("\t", " ").replace("\x00", " ")
        super().__init__(
            f"invalid filter at column {position + 1}: {message}\n  {printable}\n  {' ' * caret}^"
        )
        self.column = position + 1


# -- times ----------------------------------------------------------------------------------------


def parse_time(value: Any) -> float:
    """Seconds since the epoch of an ISO time string, a datetime, or a number (strict: for what
    a user typed)."""
    if value is None:
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidValue(
            f"not a time: {value!r}; use an ISO date such as '2026-01-31' or "
            "'2026-01-31T12:00:00+00:00', or seconds since 1970"
        ) from None


def timestamp(value: Any) -> float | None:
    """Seconds since the epoch of a record's time field, or None when it has none (lenient:
    for what records hold)."""
    if value is None or value == "":
        return None
    try:
        return parse_time(value)
    except InvalidValue:
        return None


# -- what a filter reads of a record --------------------------------------------------------------


@dataclass
class Facts:
    """The typed fields of one record a filter or sort reads; derived once per record version.

    The index stores exactly these (``Index.upsert_many`` calls :func:`facts`), so the SQL path
    and the in-memory path read the same values.
    """

    id: str
    attrs: dict[str, Any]
    started: float | None
    ended: float | None
    params: dict[str, tuple[str, Any]]  # flat key -> ("n" | "s" | "b", float | str)
    params_raw: dict[str, Any]
    metrics: dict[str, dict[str, float | None]]
    tags: frozenset[str]

    def duration(self, now: float) -> float | None:
        if self.started is None:
            return None
        end = self.ended if self.ended is not None else now
        return end - self.started


def _number(value: Any) -> float | None:
    """A stored metric number (JSON keeps NaN and infinities as strings); NaN is no value."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def typed_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, tuple[str, Any]]:
    """The leaves of (nested) params a filter can compare: numbers, strings and booleans, under
    their dotted path (``{"opt": {"lr": 0.1}}`` -> ``{"opt.lr": ("n", 0.1)}``). Lists, nulls and
    NaN are not comparable and are left out."""
    out: dict[str, tuple[str, Any]] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(typed_params(value, f"{name}."))
        elif isinstance(value, bool):
            out[name] = ("b", 1.0 if value else 0.0)
        elif isinstance(value, int | float):
            number = float(value)
            if not math.isnan(number):
                out[name] = ("n", number)
        elif isinstance(value, str):
            out[name] = ("s", value)
    return out


def facts(record: Mapping[str, Any]) -> Facts:
    """What filters and sorts read of a record (a parsed record file, a record's
    ``index_view()``, or a dict from ``Experiment.to_dict``)."""
    code = record.get("code") or {}
    sweep = record.get("sweep") or {}
    raw = record.get("params_json")
    params = json.loads(raw) if isinstance(raw, str) else (record.get("params") or {})
    if not isinstance(params, dict):
        params = {}
    metrics: dict[str, dict[str, float | None]] = {}
    for name, s in (record.get("metrics_summary") or {}).items():
        if isinstance(s, Mapping):
            count = s.get("count")
            metrics[str(name)] = {
                "last": _number(s.get("last")),
                "min": _number(s.get("min")),
                "max": _number(s.get("max")),
                "count": float(count) if isinstance(count, int | float) else 0.0,
            }
    return Facts(
        id=str(record.get("experiment_id", "")),
        attrs={
            "id": str(record.get("experiment_id", "")),
            "name": str(record.get("name", "")),
            "status": str(record.get("status") or "pending").lower(),
            "created": timestamp(record.get("created_at")),
            "branch": record.get("branch"),
            "commit": code.get("commit") if isinstance(code, Mapping) else None,
            "sweep": sweep.get("sweep_id") if isinstance(sweep, Mapping) else None,
            "parent": record.get("parent_experiment"),
        },
        started=timestamp(record.get("started_at")),
        ended=timestamp(record.get("ended_at")),
        params=typed_params(params),
        params_raw=params,
        metrics=metrics,
        tags=frozenset(str(t) for t in record.get("tags") or ()),
    )


# -- the filter tree ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """Something a filter or sort reads: ``attr`` (name, status, ...), ``param`` (a dotted
    key), ``metric`` (a name and one of last/min/max/count) or ``tag``."""

    kind: str
    name: str
    stat: str = "last"

    def __str__(self) -> str:
        if self.kind == "attr":
            return self.name
        if self.kind == "metric":
            return f"metrics.{self.name}.{self.stat}"
        return f"{self.kind}s.{self.name}"


@dataclass
class _Ctx:
    now: float
    args: list[Any] = field(default_factory=list)
    # "in": params/metrics/tags tests as `e.id IN (SELECT id ...)`, which SQLite can drive from
    # their (key, value) indexes (listing); "exists": correlated lookups by id, for a query
    # whose outer loop is already chosen (find_best walks a metric's order).
    style: str = "in"
    # With "in" and such a test present, attribute columns are written `+col` so that SQLite
    # does not pick a weak attribute index (status) over the subquery's.
    plus: bool = False
    # Leaves (by id) written as "exists" whatever the style: the tests beside the one chosen
    # to drive the query (see Filter.sql, `count`).
    lookups: frozenset[int] = frozenset()
    driver: int = 0  # the leaf (by id) the query's FROM already tests: it compiles to "1"

    def bind(self, value: Any) -> str:
        self.args.append(value)
        return "?"


class Node:
    """One node of a parsed filter."""

    def sql(self, ctx: _Ctx) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def test(self, f: Facts, now: float) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def fields(self) -> Iterable[Field]:
        return ()


@dataclass
class All(Node):
    def sql(self, ctx: _Ctx) -> str:
        return "1"

    def test(self, f: Facts, now: float) -> bool:
        return True


@dataclass
class Bool(Node):
    op: str  # "and" | "or"
    items: list[Node]

    def sql(self, ctx: _Ctx) -> str:
        joiner = " AND " if self.op == "and" else " OR "
        return "(" + joiner.join(i.sql(ctx) for i in self.items) + ")"

    def test(self, f: Facts, now: float) -> bool:
        if self.op == "and":
            return all(i.test(f, now) for i in self.items)
        return any(i.test(f, now) for i in self.items)

    def fields(self) -> Iterable[Field]:
        for i in self.items:
            yield from i.fields()


@dataclass
class Not(Node):
    item: Node

    def sql(self, ctx: _Ctx) -> str:
        # Every leaf compiles to 0 or 1 (never NULL), so NOT is the plain negation.
        return f"(NOT {self.item.sql(ctx)})"

    def test(self, f: Facts, now: float) -> bool:
        return not self.item.test(f, now)

    def fields(self) -> Iterable[Field]:
        return self.item.fields()


_SQL_OPS = {"=": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_PY_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "b"
    if isinstance(value, int | float):
        return "n"
    return "s"


def _sql_value(value: Any) -> Any:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return value


@dataclass
class Leaf(Node):
    """A test of one field: ``op`` is a comparison, ``in``, ``like``, ``ilike``, ``glob`` or
    ``exists``; a missing field (or one of another type) never passes."""

    fld: Field
    op: str
    value: Any = None  # a scalar, a list for "in", a compiled regex text for the matches

    def fields(self) -> Iterable[Field]:
        yield self.fld

    # In memory ---------------------------------------------------------------------------

    def _get(self, f: Facts, now: float) -> tuple[str, Any] | None:
        fld = self.fld
        if fld.kind == "attr":
            if fld.name == "duration":
                d = f.duration(now)
                return None if d is None else ("n", d)
            v = f.attrs.get(fld.name)
            if v is None:
                return None
            return ("n", float(v)) if ATTRIBUTES[fld.name][0] == "number" else ("s", v)
        if fld.kind == "param":
            return f.params.get(fld.name)
        if fld.kind == "metric":
            s = f.metrics.get(fld.name)
            v = None if s is None else s.get(fld.stat)
            return None if v is None else ("n", v)
        return ("b", 1.0) if fld.name in f.tags else None

    def test(self, f: Facts, now: float) -> bool:
        got = self._get(f, now)
        if got is None:
            return False
        kind, have = got
        op = self.op
        if op == "exists":
            return True
        if op == "in":
            return any(_kind_of(v) == kind and have == _sql_value(v) for v in self.value)
        if op in ("like", "ilike", "glob"):
            return kind == "s" and _regex(self.value).match(have) is not None
        if _kind_of(self.value) != kind:
            return False
        return _PY_OPS[op](have, _sql_value(self.value))

    # In SQL --------------------------------------------------------------------------------

    def _cond(self, ctx: _Ctx, col: str, kind_col: str | None) -> str:
        """The test of this leaf on column ``col`` (``kind_col``: the params kind column)."""
        op = self.op
        if op == "exists":
            return f"{col} IS NOT NULL"
        if op in ("like", "ilike", "glob"):
            test = f"coralx_match({ctx.bind(self.value)}, {col})"
            return f"{kind_col} = 's' AND {test}" if kind_col else test
        if op == "in":
            parts = []
            for kind in ("n", "s", "b"):
                vals = [_sql_value(v) for v in self.value if _kind_of(v) == kind]
                if not vals:
                    continue
                if len(vals) > 50:
                    marks = f"(SELECT value FROM json_each({ctx.bind(json.dumps(vals))}))"
                else:
                    marks = "(" + ",".join(ctx.bind(v) for v in vals) + ")"
                part = f"{col} IN {marks}"
                parts.append(f"({kind_col} = '{kind}' AND {part})" if kind_col else part)
            return "(" + (" OR ".join(parts) or "0") + ")"
        cond = f"{col} {_SQL_OPS[op]} {ctx.bind(_sql_value(self.value))}"
        if kind_col:
            return f"{kind_col} = '{_kind_of(self.value)}' AND {cond}"
        return cond

    def sql(self, ctx: _Ctx) -> str:
        if id(self) == ctx.driver:
            return "1"
        fld = self.fld
        if fld.kind == "attr":
            if fld.name == "duration":
                col = f"(coalesce(e.ended_ts, {ctx.bind(ctx.now)}) - e.started_ts)"
                null = "e.started_ts IS NOT NULL"
            else:
                col = ATTRIBUTES[fld.name][1]
                null = f"{col} IS NOT NULL"
            if self.op == "exists":
                return f"({null})"
            # "x IS NOT NULL AND x op ?" is 0 or 1, never NULL: NOT stays two-valued.
            plus = "+" if ctx.plus and fld.name != "duration" else ""
            return f"({null} AND {self._cond(ctx, plus + col, None)})"
        style = "exists" if id(self) in ctx.lookups else ctx.style
        if fld.kind == "tag":
            if style == "in":
                return f"e.id IN (SELECT id FROM tags t WHERE t.tag = {ctx.bind(fld.name)})"
            return (
                f"EXISTS (SELECT 1 FROM tags t WHERE t.tag = {ctx.bind(fld.name)} AND t.id = e.id)"
            )
        if fld.kind == "param":
            key = ctx.bind(fld.name)
            if self.op == "exists":
                cond = "1"
            elif self.op in ("like", "ilike", "glob"):
                cond = self._cond(ctx, "p.text", "p.kind")
            elif self.op == "in":
                cond = self._cond_in_param(ctx)
            else:
                col = "p.text" if _kind_of(self.value) == "s" else "p.num"
                cond = self._cond(ctx, col, "p.kind")
            if style == "in":
                return f"e.id IN (SELECT id FROM params p WHERE p.key = {key} AND {cond})"
            return f"EXISTS (SELECT 1 FROM params p WHERE p.id = e.id AND p.key = {key} AND {cond})"
        name = ctx.bind(fld.name)
        if self.op in ("like", "ilike", "glob"):
            return "0"  # metrics are numbers: no text pattern matches them
        cond = self._cond(ctx, f"mq.{fld.stat}", None)
        if style == "in":
            return (
                f"e.id IN (SELECT id FROM metrics mq WHERE mq.name = {name} "
                f"AND mq.{fld.stat} IS NOT NULL AND {cond})"
            )
        return (
            f"EXISTS (SELECT 1 FROM metrics mq WHERE mq.name = {name} AND mq.id = e.id "
            f"AND mq.{fld.stat} IS NOT NULL AND {cond})"
        )

    def _cond_in_param(self, ctx: _Ctx) -> str:
        parts = []
        for kind, col in (("n", "p.num"), ("s", "p.text"), ("b", "p.num")):
            vals = [_sql_value(v) for v in self.value if _kind_of(v) == kind]
            if vals:
                marks = ",".join(ctx.bind(v) for v in vals)
                parts.append(f"(p.kind = '{kind}' AND {col} IN ({marks}))")
        return "(" + (" OR ".join(parts) or "0") + ")"


@dataclass
class ParamJson(Node):
    """A param equal to a JSON value that is not a scalar (a list, null): the keyword
    ``params=`` filter of ``tracker.list``; compared as JSON."""

    key: str
    value: Any

    def sql(self, ctx: _Ctx) -> str:
        params = "(SELECT rp.params FROM records rp WHERE rp.id = e.id)"
        return f"param_eq({params}, {ctx.bind(self.key)}, {ctx.bind(json.dumps(self.value))})"

    def test(self, f: Facts, now: float) -> bool:
        return bool(self.key in f.params_raw and f.params_raw[self.key] == self.value)


@lru_cache(maxsize=512)
def _regex(pattern_regex: str) -> re.Pattern[str]:
    return re.compile(pattern_regex, re.DOTALL)


def like_regex(pattern: str, ignore_case: bool = False) -> str:
    """The regular expression of a SQL LIKE pattern: ``%`` any text, ``_`` one character."""
    out = ["(?i)" if ignore_case else ""]
    for ch in pattern:
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return "".join(out) + r"\Z"


def glob_regex(pattern: str) -> str:
    """The regular expression of a glob: ``*``, ``?``, ``[abc]``, ``[!abc]``, case-sensitive."""
    return fnmatch.translate(pattern)


def sql_match(regex: str, value: Any) -> int:
    """``coralx_match(regex, value)``, registered in the index's SQLite connection: the same
    test as the in-memory path, so both agree on LIKE and GLOB."""
    if not isinstance(value, str):
        return 0
    return int(_regex(regex).match(value) is not None)


# -- parsing --------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<str>'(?:[^']|'')*'|"(?:[^"]|"")*")
  | (?P<bq>`(?:[^`]|``)*`)
  | (?P<op><=|>=|!=|<>|==|=|<|>)
  | (?P<punct>[(),.])
  | (?P<name>[A-Za-z_][A-Za-z0-9_\-]*)
    """,
    re.VERBOSE,
)
_PATH_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*")
_KEYWORDS = {"and", "or", "not", "in", "like", "ilike", "glob", "true", "false", "is", "null"}


@dataclass
class _Tok:
    kind: str  # num, str, bq, op, punct, name, end
    text: str
    pos: int
    value: Any = None


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if (
            text[pos] == "."
            and toks
            and toks[-1].kind in ("name", "bq", "num")
            and (pos == toks[-1].pos + len(toks[-1].text))
        ):
            toks.append(_Tok("punct", ".", pos))  # "layer.0": a path, not the number .0
            pos += 1
            part = _PATH_PART.match(text, pos)
            if part is not None:  # "layer.0.size": 0 is a key here, not the number 0.
                toks.append(_Tok("name", part.group(), pos))
                pos = part.end()
            continue
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            if ch in "'\"`":
                raise FilterSyntaxError(text, pos, f"this {ch} opens a quote that never closes")
            raise FilterSyntaxError(
                text, pos, f"unexpected character {ch!r}; expected a field, a value or an operator"
            )
        kind = m.lastgroup or ""
        raw = m.group()
        if (
            kind == "num"
            and toks
            and toks[-1].kind in ("num", "str", "name", "bq")
            and raw[0] in "+-"
        ):
            raise FilterSyntaxError(text, pos, "expected an operator or 'and'/'or', found a number")
        if kind != "ws":
            tok = _Tok(kind, raw, pos)
            if kind == "num":
                tok.value = float(raw) if any(c in raw for c in ".eE") else int(raw)
            elif kind == "str":
                q = raw[0]
                tok.value = raw[1:-1].replace(q + q, q)
            elif kind == "bq":
                tok.value = raw[1:-1].replace("``", "`")
            toks.append(tok)
        pos = m.end()
    toks.append(_Tok("end", "", len(text)))
    return toks


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def word(self, *words: str) -> bool:
        t = self.tok
        return t.kind == "name" and t.text.lower() in words

    def fail(self, expected: str, tok: _Tok | None = None) -> FilterSyntaxError:
        t = tok or self.tok
        found = "the end of the filter" if t.kind == "end" else repr(t.text[:40])
        return FilterSyntaxError(self.text, t.pos, f"expected {expected}, found {found}")

    def take(self) -> _Tok:
        t = self.tok
        self.i += 1
        return t

    def parse(self) -> Node:
        if self.tok.kind == "end":
            return All()
        node = self.or_expr()
        if self.tok.kind != "end":
            raise self.fail("'and', 'or' or the end of the filter")
        return node

    def or_expr(self) -> Node:
        return self.chain("or", self.and_expr)

    def and_expr(self) -> Node:
        return self.chain("and", self.not_expr)

    def chain(self, word: str, operand: Callable[[], Node]) -> Node:
        """``operand (word operand)*``: one level of the and/or precedence."""
        items = [operand()]
        while self.word(word):
            self.take()
            items.append(operand())
        return items[0] if len(items) == 1 else Bool(word, items)

    def not_expr(self) -> Node:
        if self.word("not"):
            self.take()
            return Not(self.not_expr())
        return self.atom()

    def atom(self) -> Node:
        t = self.tok
        if t.kind == "punct" and t.text == "(":
            self.take()
            node = self.or_expr()
            if not (self.tok.kind == "punct" and self.tok.text == ")"):
                raise self.fail("')' to close the '(' at column " + str(t.pos + 1))
            self.take()
            return node
        if t.kind not in ("name", "bq") or (t.kind == "name" and t.text.lower() in _KEYWORDS):
            raise self.fail(
                "a field (name, status, created, params.X, metrics.X, tags.X, ...) or '('"
            )
        return self.test(self.field())

    def key(self, what: str) -> list[str]:
        """The dotted key after ``params.``/``metrics.``/``tags.``: names or `quoted` parts."""
        parts: list[str] = []
        while True:
            t = self.tok
            if t.kind in ("name", "num"):
                parts.append(t.text)
            elif t.kind in ("bq", "str"):
                parts.append(str(t.value))
            else:
                raise self.fail(f"a {what} name (quote odd ones in backticks: `my-name`)")
            self.take()
            if not (self.tok.kind == "punct" and self.tok.text == "."):
                return parts
            self.take()

    def field(self) -> Field:
        t = self.take()
        head = t.text.lower() if t.kind == "name" else str(t.value)
        if head in ("attributes", "attribute", "attr") and self.tok.text == ".":
            self.take()
            t = self.take()
            head = t.text.lower()
            if t.kind != "name" or _ALIASES.get(head, head) not in ATTRIBUTES:
                raise self.fail("an attribute: " + ", ".join(ATTRIBUTES), t)
        group = {"params": "param", "param": "param", "metrics": "metric", "metric": "metric",
                 "tags": "tag", "tag": "tag"}.get(head)  # fmt: skip
        if group is not None and self.tok.kind == "punct" and self.tok.text == ".":
            self.take()
            parts = self.key(group)
            if group == "metric":
                stat = "last"
                if len(parts) > 1 and parts[-1].lower() in _STATS:
                    stat = parts.pop().lower()
                return Field("metric", ".".join(parts), stat)
            return Field(group, ".".join(parts))
        name = _ALIASES.get(head, head)
        if name not in ATTRIBUTES:
            raise FilterSyntaxError(
                self.text,
                t.pos,
                f"unknown field {t.text!r}; expected one of {', '.join(ATTRIBUTES)}, "
                "params.NAME, metrics.NAME[.min|.max|.count|.last] or tags.NAME",
            )
        return Field("attr", name)

    def value(self, fld: Field) -> Any:
        t = self.tok
        if t.kind == "num":
            self.take()
            value: Any = t.value
        elif t.kind == "str":
            self.take()
            value = t.value
        elif self.word("true", "false"):
            self.take()
            value = t.text.lower() == "true"
        else:
            raise self.fail("a value: a number, a 'quoted string', true or false")
        return self.check_value(fld, value, t)

    def check_value(self, fld: Field, value: Any, t: _Tok) -> Any:
        def wrong(msg: str) -> FilterSyntaxError:
            return FilterSyntaxError(self.text, t.pos, msg)

        if fld.kind == "metric" and _kind_of(value) != "n":
            raise wrong(f"{fld} is a number; compare it with a number")
        if fld.kind == "attr":
            kind = ATTRIBUTES[fld.name][0]
            if fld.name == "created" and isinstance(value, str):
                try:
                    return parse_time(value)
                except InvalidValue:
                    msg = f"not a time: {value!r}; expected an ISO date like '2026-01-31'"
                    raise wrong(msg) from None
            if kind == "number" and _kind_of(value) != "n":
                raise wrong(f"{fld.name} is a number; compare it with a number")
            if kind == "text" and not isinstance(value, str):
                raise wrong(f"{fld.name} is text; compare it with a 'quoted string'")
            if fld.name == "status":
                value = value.lower()
                if value not in STATUSES:
                    raise wrong(f"unknown status {value!r}; expected one of {', '.join(STATUSES)}")
        return value

    def test(self, fld: Field) -> Node:
        t = self.tok
        negate = False
        if self.word("not"):
            self.take()
            negate = True
            if not self.word("in", "like", "ilike", "glob"):
                raise self.fail("'in', 'like', 'ilike' or 'glob' after 'not'")
            t = self.tok
        if fld.kind == "tag":
            if t.kind == "op" or self.word("in", "like", "ilike", "glob", "is"):
                raise FilterSyntaxError(
                    self.text, t.pos, f"tags have no values: write {fld} to test that a run has it"
                )
            return Leaf(fld, "exists")
        if t.kind == "op":
            self.take()
            op = {"==": "=", "<>": "!="}.get(t.text, t.text)
            return Leaf(fld, op, self.value(fld))
        if self.word("in"):
            self.take()
            if not (self.tok.kind == "punct" and self.tok.text == "("):
                raise self.fail("'(' and a list of values after 'in'")
            self.take()
            values = [self.value(fld)]
            while self.tok.kind == "punct" and self.tok.text == ",":
                self.take()
                values.append(self.value(fld))
            if not (self.tok.kind == "punct" and self.tok.text == ")"):
                raise self.fail("',' or ')' in the list of values")
            self.take()
            node: Node = Leaf(fld, "in", values)
            return Not(node) if negate else node
        if self.word("like", "ilike", "glob"):
            op = self.take().text.lower()
            p = self.tok
            if p.kind != "str":
                raise self.fail(f"a 'quoted pattern' after {op}")
            self.take()
            if fld.kind == "metric" or (fld.kind == "attr" and ATTRIBUTES[fld.name][0] != "text"):
                raise FilterSyntaxError(self.text, p.pos, f"{fld} is a number: {op} needs text")
            pattern = str(p.value)
            wild = sum(pattern.count(c) for c in ("%", "_") if op != "glob") + (
                pattern.count("*") + pattern.count("?") if op == "glob" else 0
            )
            if wild > MAX_WILDCARDS:
                raise FilterSyntaxError(
                    self.text, p.pos, f"at most {MAX_WILDCARDS} wildcards in a pattern"
                )
            regex = glob_regex(pattern) if op == "glob" else like_regex(pattern, op == "ilike")
            node = Leaf(fld, op, regex)
            return Not(node) if negate else node
        if self.word("is"):
            raise self.fail("an operator; 'is null' is not supported, write 'not FIELD'")
        if t.kind == "end" or self.word("and", "or") or (t.kind == "punct" and t.text == ")"):
            return Leaf(fld, "exists")  # a bare field: the run has a value of it
        raise self.fail("an operator (=, !=, <, <=, >, >=, in, like, ilike, glob), 'and' or 'or'")


# -- the filter object ----------------------------------------------------------------------------


@dataclass
class Filter:
    """A validated run filter: compiles to SQL over the index and matches records in memory.

    >>> f = parse_filter("name glob 'bert-*' or not tags.smoke")
    >>> where, args = f.sql(now=0.0)
    """

    root: Node
    text: str = ""

    def sql(
        self,
        now: float | None = None,
        style: str = "in",
        count: Callable[[str, list[Any]], int] | None = None,
    ) -> tuple[str, list[Any]]:
        """``(condition, bound values)`` over ``experiments e`` of the index. ``style="in"``
        suits a query that scans runs; ``"exists"`` one whose outer loop is another table.
        Both give the same rows.

        ``count(sql, args)`` runs a ``SELECT count(*)`` on the index. Given it, a filter that
        requires several params, metrics or tags (``a and b and c``) is driven by the one
        that the fewest runs pass, counted on its index, and tests the others by lookups
        on those runs alone: building a list of every run each test passes costs more than
        the test."""
        now = time.time() if now is None else now
        ctx = _Ctx(now=now, style=style)
        ctx.plus = style == "in" and any(f.kind != "attr" for f in self.root.fields())
        if style == "in" and count is not None:
            ctx.lookups = self._lookups(now, count)[1]
        return self.root.sql(ctx), ctx.args

    def source(
        self, now: float | None = None, count: Callable[[str, list[Any]], int] | None = None
    ) -> tuple[str, str, list[Any]]:
        """``(FROM clause, condition, bound values)`` of a query over runs (``e``): the
        :meth:`sql` of ``style="in"``, except that the test chosen to drive a filter of
        several (see ``count`` there) is the FROM clause's first table, its index walked
        straight into the runs, instead of a list of runs built first. Each run comes once:
        a run has one row per tag, param key and metric name."""
        now = time.time() if now is None else now
        driver, lookups = self._lookups(now, count) if count is not None else (None, frozenset())
        ctx = _Ctx(now=now, plus=any(f.kind != "attr" for f in self.root.fields()))
        ctx.lookups = lookups
        head = "e.id IN (SELECT id FROM "
        if driver is not None:
            probe = _Ctx(now=now)
            test = driver.sql(probe)
            if test.startswith(head) and " WHERE " in test:
                table, where = test[len(head) : -1].split(" WHERE ", 1)
                alias = table.split()[1]
                ctx.driver = id(driver)
                cond = self.root.sql(ctx)
                source = f"{table} CROSS JOIN experiments e ON e.id = {alias}.id"
                return source, f"({where}) AND {cond}", [*probe.args, *ctx.args]
        return "experiments e", self.root.sql(ctx), ctx.args

    def _lookups(
        self, now: float, count: Callable[[str, list[Any]], int]
    ) -> tuple[Leaf | None, frozenset[int]]:
        """The test to drive the query, and (by id) the tests to check by lookups."""
        items = self.root.items if isinstance(self.root, Bool) and self.root.op == "and" else []
        tests = [i for i in items if isinstance(i, Leaf) and i.fld.kind != "attr"]
        if len(tests) < 2:
            return None, frozenset()
        best, fewest = tests[0], -1
        for leaf in tests:
            probe = _Ctx(now=now)
            where = leaf.sql(probe)
            if not where.startswith("e.id IN ("):
                continue  # a test that reads no index (a pattern on a metric)
            # At most one more than the fewest so far: the count stops there.
            limit = "" if fewest < 0 else f" LIMIT {fewest + 1}"
            n = count(f"SELECT count(*) FROM ({where[len('e.id IN (') : -1]}{limit})", probe.args)
            if fewest < 0 or n < fewest:
                best, fewest = leaf, n
        if fewest < 0:
            return None, frozenset()
        return best, frozenset(id(leaf) for leaf in tests if leaf is not best)

    def matches(self, record: Mapping[str, Any] | Facts, now: float | None = None) -> bool:
        """Whether one record (or its :func:`facts`) passes the filter."""
        f = record if isinstance(record, Facts) else facts(record)
        return self.root.test(f, time.time() if now is None else now)

    def mentions(self, kind: str, name: str | None = None) -> bool:
        """Whether the filter reads a field of this kind (and name)."""
        return any(
            fl.kind == kind and (name is None or fl.name == name) for fl in self.root.fields()
        )

    def __and__(self, other: Filter) -> Filter:
        items = [n for n in (self.root, other.root) if not isinstance(n, All)]
        if not items:
            return Filter(All())
        text = " and ".join(f"({t})" for t in (self.text, other.text) if t)
        return Filter(items[0] if len(items) == 1 else Bool("and", items), text)


def parse_filter(text: str | None) -> Filter:
    """Parse a filter string (see ``docs/cli.md``, "Filters"); empty or None matches all.

    >>> parse_filter("status = 'completed' and (params.lr < 0.01 or tags.bert)").text
    "status = 'completed' and (params.lr < 0.01 or tags.bert)"
    """
    if text is None:
        return Filter(All())
    if not isinstance(text, str):
        raise InvalidValue(f"a filter is a string, not {type(text).__name__}")
    if len(text) > MAX_FILTER_CHARS:
        raise InvalidValue(f"a filter may be at most {MAX_FILTER_CHARS:,} characters long")
    return Filter(_Parser(text).parse(), text)


def check_statuses(status: Any) -> list[str] | None:
    """Status names (or ExperimentStatus values) as lowercase strings; None for None."""
    if status is None:
        return None
    items = [status] if isinstance(status, str) else list(status)
    out = []
    for s in items:
        text = str(getattr(s, "value", s)).lower()
        if text not in STATUSES:
            raise InvalidValue(f"unknown status {s!r}; use one of {', '.join(STATUSES)}")
        out.append(text)
    return out


def from_keywords(
    *,
    status: Any = None,
    tags: Sequence[str] | None = None,
    tags_match: str = "all",
    branch: str | None = None,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    since: float | None = None,
    sweep_id: str | None = None,
    parent: str | None = None,
    code_commits: Iterable[str] | None = None,
    ids: Sequence[str] | None = None,
) -> Filter:
    """The keyword filters of ``tracker.list``/``find_best`` (and the viewer's boxes) as a
    :class:`Filter`: ``name`` is a glob, ``params`` are equalities (nested dicts reach
    nested params), ``tags`` all of them (``tags_match="any"``: any)."""
    if tags_match not in ("all", "any"):
        raise InvalidValue(f"tags_match must be 'all' or 'any', not {tags_match!r}")
    items: list[Node] = []
    statuses = check_statuses(status)
    if statuses:
        items.append(Leaf(Field("attr", "status"), "in", statuses))
    if tags:
        leaves: list[Node] = [Leaf(Field("tag", str(t)), "exists") for t in dict.fromkeys(tags)]
        items.append(Bool("and" if tags_match == "all" else "or", leaves))
    for attr, value in (("branch", branch), ("sweep", sweep_id), ("parent", parent)):
        if value is not None:
            items.append(Leaf(Field("attr", attr), "=", str(value)))
    if name is not None:
        items.append(_name_node(name))
    for key, value in (params or {}).items():
        items.extend(_param_nodes(str(key), value))
    if since is not None:
        items.append(Leaf(Field("attr", "created"), ">=", float(since)))
    if code_commits is not None:
        commits = sorted(set(code_commits))
        items.append(Leaf(Field("attr", "commit"), "in", commits) if commits else Not(All()))
    if ids is not None:
        items.append(Leaf(Field("attr", "id"), "in", list(ids)) if ids else Not(All()))
    if not items:
        return Filter(All())
    return Filter(items[0] if len(items) == 1 else Bool("and", items))


def _name_node(pattern: str) -> Node:
    """``--name``: a glob over the whole name; a sweep run, named ``<experiment>/<config>``,
    also matches by either part alone (``--name 'hidden64*'``, ``--name digits-sweep``)."""
    whole = glob_regex(pattern)
    core = whole[: -len(r"\Z")] if whole.endswith(r"\Z") else whole
    parts = rf"(?:[^/]*/(?:{core})|(?:{core})/[^/]*)\Z"
    name = Field("attr", "name")
    in_sweep = Bool("and", [Leaf(Field("attr", "sweep"), "exists"), Leaf(name, "glob", parts)])
    return Bool("or", [Leaf(name, "glob", whole), in_sweep])


def parse_param_pairs(pairs: Iterable[str]) -> dict[str, Any]:
    """``["lr=0.001", "opt=adam"]`` -> ``{"lr": 0.001, "opt": "adam"}``: the value is read as
    JSON (numbers, true/false, null, lists, quoted strings), else kept as text."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidValue(f"a param filter takes KEY=VALUE (e.g. lr=0.01), not {pair!r}")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def _param_nodes(key: str, value: Any) -> list[Node]:
    if isinstance(value, dict) and value:
        return [n for k, v in value.items() for n in _param_nodes(f"{key}.{k}", v)]
    if isinstance(value, bool | int | float | str) and not (
        isinstance(value, float) and math.isnan(value)
    ):
        return [Leaf(Field("param", key), "=", value)]
    return [ParamJson(key, value)]


# -- sorting --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SortKey:
    """One sort key: a field and a direction. Runs without a value sort last either way."""

    fld: Field
    descending: bool = False


def parse_sort(keys: str | Sequence[str] | None) -> list[SortKey]:
    """Sort keys from strings: ``"-metrics.acc.max"`` (highest first), ``"params.lr"``,
    ``"created"``, ``"name"``. A bare metric name is its best value: ``"val_loss"`` means
    ``metrics.val_loss.min``, ``"-accuracy"`` means ``-metrics.accuracy.max``.

    >>> parse_sort(["-metrics.acc.max", "params.lr"])[0].descending
    True
    """
    if keys is None:
        return []
    out = []
    for raw in [keys] if isinstance(keys, str) else keys:
        text = str(raw).strip()
        descending = text.startswith("-")
        body = text[1:].strip() if descending or text.startswith("+") else text
        if not body:
            raise InvalidValue(f"empty sort key {raw!r}; e.g. -metrics.acc.max or params.lr")
        parser = _Parser(body)
        head = parser.tok
        if (
            head.kind == "name"
            and "." not in body
            and _ALIASES.get(body.lower(), body.lower()) not in ATTRIBUTES
        ):
            fld = Field("metric", body, "max" if descending else "min")
        else:
            fld = parser.field()
            if parser.tok.kind != "end":
                raise parser.fail("the end of the sort key")
            if fld.kind == "tag":
                raise InvalidValue(f"cannot sort by a tag ({raw!r}); filter on it with --where")
        out.append(SortKey(fld, descending))
    return out


def _sort_expr(key: SortKey, ctx: _Ctx) -> str:
    fld = key.fld
    if fld.kind == "attr":
        if fld.name == "duration":
            return f"(coalesce(e.ended_ts, {ctx.bind(ctx.now)}) - e.started_ts)"
        return ATTRIBUTES[fld.name][1]
    if fld.kind == "param":
        return (
            "(SELECT CASE WHEN p.kind = 's' THEN p.text ELSE p.num END FROM params p "
            f"WHERE p.id = e.id AND p.key = {ctx.bind(fld.name)})"
        )
    name = ctx.bind(fld.name)
    return f"(SELECT ms.{fld.stat} FROM metrics ms WHERE ms.name = {name} AND ms.id = e.id)"


def order_sql(keys: Sequence[SortKey], now: float | None = None) -> tuple[str, list[Any]]:
    """``ORDER BY`` terms for the keys (missing values last), then newest first (id)."""
    ctx = _Ctx(now=time.time() if now is None else now)
    terms = []
    for key in keys:
        # SQLite orders numbers before text, as the in-memory sort does.
        terms.append(f"{_sort_expr(key, ctx)} {'DESC' if key.descending else 'ASC'} NULLS LAST")
    terms.append("e.id DESC")
    return ", ".join(terms), ctx.args


def _sort_value(key: SortKey, f: Facts, now: float) -> tuple[int, Any] | None:
    got = Leaf(key.fld, "exists")._get(f, now)
    if got is None:
        return None
    kind, value = got
    return (1, value) if kind == "s" else (0, value)


def sort_facts(items: list[Any], keys: Sequence[SortKey], get: Callable[[Any], Facts],
               now: float | None = None) -> list[Any]:  # fmt: skip
    """``items`` ordered as :func:`order_sql` orders rows: by each key (missing last), then
    newest first. ``get`` gives an item's :class:`Facts`."""
    at = time.time() if now is None else now
    out = sorted(items, key=lambda it: get(it).id, reverse=True)
    for key in reversed(keys):
        present: list[tuple[Any, Any]] = []
        missing: list[tuple[Any, Any]] = []
        for it in out:
            v = _sort_value(key, get(it), at)
            (missing if v is None else present).append((v, it))
        present.sort(key=lambda p: p[0], reverse=key.descending)  # stable, also reversed
        out = [it for _, it in present] + [it for _, it in missing]
    return out


# -- ids ------------------------------------------------------------------------------------------

_HEX = frozenset("0123456789abcdef")


def resolve_prefix(
    text: str,
    lookup: Callable[[str, int], list[str]],
    *,
    kind: str = "experiment id",
    length: int = 20,
) -> str:
    """The full id ``text`` names (an id or an unambiguous prefix, any length from 1).
    ``lookup(prefix, limit)`` returns up to ``limit`` full ids that start with ``prefix``.

    >>> resolve_prefix("01a", lambda p, n: ["01a2093a000000000000"])
    '01a2093a000000000000'
    """
    prefix = str(text).strip().lower()
    if not prefix or len(prefix) > length or not _HEX.issuperset(prefix):
        raise _not_found(kind, text)
    matches = lookup(prefix, 11)
    if not matches:
        raise _not_found(kind, text)
    if len(matches) > 1:
        raise AmbiguousRevision(str(text), matches, kind=kind)
    return matches[0]


def _not_found(kind: str, text: str) -> Exception:
    if kind == "experiment id":
        return ExperimentNotFound(str(text))
    from ..errors import SweepNotFound

    return SweepNotFound(str(text))


def prefix_lookup(sorted_ids: Sequence[str]) -> Callable[[str, int], list[str]]:
    """A ``lookup`` for :func:`resolve_prefix` over a sorted list of ids (binary search)."""

    def lookup(prefix: str, limit: int) -> list[str]:
        i = bisect.bisect_left(sorted_ids, prefix)
        out: list[str] = []
        while i < len(sorted_ids) and len(out) < limit and sorted_ids[i].startswith(prefix):
            out.append(sorted_ids[i])
            i += 1
        return out

    return lookup


# -- lineage --------------------------------------------------------------------------------------


def ancestors(run_id: str, parent_of: Callable[[str], str | None]) -> list[str]:
    """The ids a run descends from, oldest first (not the run itself). ``parent_of(id)`` is a
    run's parent id, or None (also for a run that no longer exists). Stops at a cycle and after
    :data:`LINEAGE_DEPTH` generations."""
    chain: list[str] = []
    seen = {run_id}
    parent = parent_of(run_id)
    while parent and parent not in seen and len(chain) < LINEAGE_DEPTH:
        seen.add(parent)
        chain.append(parent)
        parent = parent_of(parent)
    chain.reverse()
    return chain


def descendants(run_id: str, children_of: Callable[[str], Iterable[str]]) -> dict[str, Any]:
    """The tree of runs resumed from ``run_id``: ``{"id": ..., "children": [...]}``, children in
    id order, at most :data:`LINEAGE_DEPTH` generations deep, each run once."""
    seen = {run_id}

    def grow(node_id: str, depth: int) -> dict[str, Any]:
        kids = []
        if depth < LINEAGE_DEPTH:
            for kid in sorted(children_of(node_id)):
                if kid not in seen:
                    seen.add(kid)
                    kids.append(grow(kid, depth + 1))
        return {"id": node_id, "children": kids}

    return grow(run_id, 0)


# -- compare --------------------------------------------------------------------------------------

_MAX_WORDS = ("acc", "accuracy", "f1", "auc", "auroc", "precision", "recall", "score", "reward",
              "return", "iou", "dice", "bleu", "rouge", "map", "r2", "psnr", "ssim", "top1",
              "top5", "throughput", "samples_per_sec")  # fmt: skip
_MIN_WORDS = ("loss", "error", "err", "perplexity", "ppl", "mse", "mae", "rmse", "nll", "wer",
              "cer", "latency", "time", "regret", "fid", "distance")  # fmt: skip


def guess_mode(metric: str) -> str:
    """Whether lower (``"min"``) or higher (``"max"``) is better for a metric, guessed from its
    name: loss, error, perplexity... are minimised; accuracy, f1, auc... maximised; an unknown
    name is taken as a loss.

    >>> guess_mode("val_acc"), guess_mode("val_loss"), guess_mode("eval/perplexity")
    ('max', 'min', 'min')
    """
    words = [w for w in re.split(r"[^a-z0-9]+", metric.lower()) if w]
    for w in reversed(words):  # the last word names the quantity: "loss_of_acc_head" is a loss
        if w in _MIN_WORDS:
            return "min"
        if w in _MAX_WORDS or w.startswith("acc"):
            return "max"
    return "min"


def compare_records(
    records: Sequence[Mapping[str, Any]],
    metrics: Sequence[str] | None = None,
    modes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Runs side by side.

    Returns ``ids``; ``metrics`` (metric -> run id -> last/min/max/count or None); ``modes``
    (metric -> "min"/"max": given, else :func:`guess_mode`); ``best`` (metric -> ``run``, the
    best run in that mode, and ``min``/``max``, the runs with the lowest and highest value);
    ``params`` (the params whose values differ, or that some runs lack), ``same`` (those equal
    in all) and ``all_params`` (param -> run id -> value). Params are compared by dotted path.
    """
    ids = [str(r["experiment_id"]) for r in records]
    summaries = [r.get("metrics_summary") or {} for r in records]
    names = sorted({m for s in summaries for m in s}) if metrics is None else list(metrics)
    table: dict[str, dict[str, Any]] = {}
    best: dict[str, dict[str, str | None]] = {}
    chosen: dict[str, str] = {}
    for metric in names:
        mode = (modes or {}).get(metric) or guess_mode(metric)
        if mode not in ("min", "max"):
            raise InvalidValue(f"mode must be 'min' or 'max', not {mode!r}")
        chosen[metric] = mode
        row: dict[str, Any] = {}
        for eid, s in zip(ids, summaries):
            got = s.get(metric)
            row[eid] = None if got is None else {k: got.get(k) for k in _STATS}
        table[metric] = row
        lows = [
            (v, eid) for eid, s in row.items() if s and (v := _number(s.get("min"))) is not None
        ]
        highs = [
            (v, eid) for eid, s in row.items() if s and (v := _number(s.get("max"))) is not None
        ]
        low = min(lows)[1] if lows else None
        high = max(highs, key=lambda x: x[0])[1] if highs else None
        best[metric] = {"run": low if mode == "min" else high, "min": low, "max": high}
    flat = [_flat(r.get("params") or {}) for r in records]
    keys = sorted({k for p in flat for k in p})
    all_params = {k: {eid: p.get(k) for eid, p in zip(ids, flat)} for k in keys}
    differ = {
        k: v
        for k, v in all_params.items()
        if len({json.dumps(x, sort_keys=True) for x in v.values()}) > 1
        or any(k not in p for p in flat)
    }
    same = {k: next(iter(v.values())) for k, v in all_params.items() if k not in differ}
    return {
        "ids": ids,
        "metrics": table,
        "modes": chosen,
        "best": best,
        "params": differ,
        "same": same,
        "all_params": all_params,
    }


def _flat(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = value
    return out


flatten_params = _flat
