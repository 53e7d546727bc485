"""Result sets: the sweep's shape, positions and slices, name globs, dict queries, best."""

from __future__ import annotations

import pytest

import coralx
from coralx.sweeps import Config, Result, ResultSet


def _results() -> ResultSet:
    cfgs = coralx.sweep(
        coralx.sweep(
            [{"name": "base", "lr": 0.1}],
            [{"name": "w64", "model.width": 64}, {"name": "w128", "model.width": 128}],
        ),
        [{"name": "e1", "epochs": 1}, {"name": "e2", "epochs": 2}, {"name": "e3", "epochs": 3}],
    )
    items = []
    for c in cfgs:
        if c.name == "base_w128_e2":
            items.append(
                Result(c.name, Config(c), "failed", error={"type": "ValueError", "message": "boom"})
            )
        else:
            acc = c.model.width / 100 + c.epochs / 10
            items.append(
                Result(
                    c.name,
                    Config(c),
                    "completed",
                    result={"acc": acc},
                    metrics={"loss": {"min": 1 / acc, "max": 2 / acc, "last": 1}},
                )
            )
    return ResultSet(items, cfgs.shape)


def test_positions_and_slices() -> None:
    rs = _results()
    assert rs.shape == (1, 2, 3)
    assert rs[0, 1, 2].name == "base_w128_e3"
    sub = rs[:, 0, :]
    assert isinstance(sub, ResultSet) and sub.shape == (1, 3)
    assert sub.names == ["base_w64_e1", "base_w64_e2", "base_w64_e3"]
    assert rs[0, :, -1].names == ["base_w64_e3", "base_w128_e3"]
    with pytest.raises(IndexError, match="shape"):
        rs[0, 5, 0]


def test_glob_and_dict_queries() -> None:
    rs = _results()
    assert rs["base_w64*"].names == ["base_w64_e1", "base_w64_e2", "base_w64_e3"]
    assert rs["*_e2"].names == ["base_w64_e2", "base_w128_e2"]
    assert rs[{"config.model.width": 128}].names == ["base_w128_e1", "base_w128_e2", "base_w128_e3"]
    assert rs[{"config.model.width": 64, "config.epochs": 3}].names == ["base_w64_e3"]
    assert rs[{"status": "failed"}].names == ["base_w128_e2"]
    assert len(rs[{"config.nope": 1}]) == 0


def test_failed_runs_carry_their_error_and_best() -> None:
    rs = _results()
    failed = rs.failed
    assert failed.names == ["base_w128_e2"]
    r = failed[0]
    assert r["__error__"] is True and r["type"] == "ValueError" and r["message"] == "boom"
    assert not r.ok
    assert rs.best("acc", "max").name == "base_w128_e3"
    assert rs.best("acc", "min").name == "base_w64_e1"
    assert rs.best("loss", "min").name == "base_w128_e3"  # from logged metrics
    assert rs.best("nothing") is None
    ok = rs[0, 0, 0]
    assert ok["acc"] == ok.result["acc"] and ok["name"] == ok.name and "__error__" not in ok
    assert len(rs.to_list()) == 6 and rs.to_list()[4]["error"]["message"] == "boom"
