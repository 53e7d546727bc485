"""The runner's stages (``Stage``): configurations run stage after stage, each stage with its own
workers and, with ``defer_context``, its context updates merged when it ends; a reused result
replays the context update its run made."""

from __future__ import annotations

from typing import Any

import coralx
from coralx import Repository
from coralx.sweeps import Config, Run
from coralx.sweeps.runner import Stage

ORDER: list[str] = []


@coralx.experiment(name="staged", executor="inline")
def staged(config: Config, run: Run) -> dict[str, Any]:
    ORDER.append(config.name)
    return {"saw": run.setup.get("last"), "context_update": {"last": config.name}}


@staged.configs
def _configs() -> list[dict[str, Any]]:
    return [{"name": n, "i": i} for i, n in enumerate(["a", "b", "c", "d"])]


def _stages(defer: bool) -> Any:
    def stages(configs: Any) -> list[Stage]:
        # "d" runs first, then "a" and "b" together, and "c" (in no stage) last
        return [Stage(["d"]), Stage(["a", "b"], workers=2, defer_context=defer)]

    return stages


def test_stages_order_and_deferred_context(repo: Repository) -> None:
    ORDER.clear()
    staged.stages = _stages(defer=True)
    try:
        result = staged.run_sweep(repo=repo)
    finally:
        staged.stages = None
    assert ORDER == ["d", "a", "b", "c"]
    saw = {r.name: r.result["saw"] for r in result.results}
    # "b" runs after "a" (inline: one at a time) but in the same deferred stage: no update
    assert saw == {"d": None, "a": "d", "b": "d", "c": "b"}


def test_immediate_context_without_defer(repo: Repository) -> None:
    ORDER.clear()
    staged.stages = _stages(defer=False)
    try:
        result = staged.run_sweep(repo=repo)
    finally:
        staged.stages = None
    saw = {r.name: r.result["saw"] for r in result.results}
    assert saw == {"d": None, "a": "d", "b": "a", "c": "b"}


def test_reused_results_replay_their_context_updates(repo: Repository) -> None:
    ORDER.clear()
    first = staged.run_sweep(repo=repo)
    assert [r.result["saw"] for r in first.results] == [None, "a", "b", "c"]
    from coralx.sweeps.record import SweepRecord

    record = SweepRecord.load(repo, first.sweep_id or "")
    assert [a.context_update for a in record.runs] == [{"last": n} for n in "abcd"]
    # Running again reuses every result; the context ends as it did
    again = staged.run_sweep(repo=repo)
    assert [r.cached for r in again.results] == [True] * 4
    assert SweepRecord.load(repo, first.sweep_id or "").context == {"last": "d"}
    assert ORDER == ["a", "b", "c", "d"]
