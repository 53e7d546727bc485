"""``coralx exp ...`` through click's CliRunner, checking the state it leaves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from coralx import Repository
from coralx.cli.exp import sparkline
from coralx.cli.main import cli
from coralx.experiments import ExperimentTracker


@pytest.fixture
def runs(repo: Repository, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    monkeypatch.chdir(tmp_path)
    tracker = ExperimentTracker(repo)
    ids = []
    for i, (tags, lr) in enumerate(((["bert"], 0.1), (["bert", "big"], 0.01), (["gpt"], 0.001))):
        tracker.start(f"run-{i}", params={"lr": lr, "bs": 32}, tags=tags)
        for step in range(20):
            tracker.log("val_loss", 1.0 / (step + 1) + i * 0.1, step=step)
        ids.append(tracker.end(commit_hash=str(i) * 40).experiment_id)
    # Write this tracker's queued index rows now: a test below deletes the index file, and a
    # late write through this process's open connection would land in the new file's WAL.
    tracker.get_summary()
    return ids


def run(runner: CliRunner, repo: Repository, *args: str, input: str | None = None):
    return runner.invoke(cli, ["-C", str(repo.root), "exp", *args], input=input)


def test_list_filters_and_json(runner: CliRunner, repo: Repository, runs: list[str]) -> None:
    result = run(runner, repo, "list", "--tag", "bert")
    assert result.exit_code == 0, result.output
    assert "run-0" in result.output and "run-1" in result.output
    assert "run-2" not in result.output
    data = json.loads(run(runner, repo, "list", "--json").output)
    assert [r["experiment_id"] for r in data] == runs[::-1]
    data = json.loads(run(runner, repo, "list", "--param", "lr=0.01", "--json").output)
    assert [r["name"] for r in data] == ["run-1"]
    data = json.loads(run(runner, repo, "list", "--sort", "-val_loss", "--json").output)
    assert [r["name"] for r in data] == ["run-2", "run-1", "run-0"]
    data = json.loads(
        run(runner, repo, "list", "--name", "run-[01]", "--limit", "1", "--json").output
    )
    assert [r["name"] for r in data] == ["run-1"]
    out = run(runner, repo, "list", "--tag", "bert", "--tag", "gpt", "--any-tag").output
    assert "3 runs" in out
    assert "no runs match" in run(runner, repo, "list", "--status", "failed").output
    bad = run(runner, repo, "list", "--status", "finished")
    assert bad.exit_code == 2 and "unknown status" in bad.output


def test_show_compare_best(runner: CliRunner, repo: Repository, runs: list[str]) -> None:
    shown = run(runner, repo, "show", runs[0][:16])
    assert shown.exit_code == 0, shown.output
    assert "run-0" in shown.output and "val_loss" in shown.output and "▁" in shown.output
    as_json = json.loads(run(runner, repo, "show", runs[0], "--json").output)
    assert as_json["params"] == {"lr": 0.1, "bs": 32}
    compared = run(runner, repo, "compare", *runs)
    assert compared.exit_code == 0, compared.output
    assert "params that differ" in compared.output and "lr" in compared.output
    assert "bs" not in compared.output.split("params that differ")[1]
    best = json.loads(run(runner, repo, "best", "--metric", "val_loss", "--json").output)
    assert [b["experiment_id"] for b in best] == runs
    tagged = run(runner, repo, "best", "--metric", "val_loss", "--tag", "big", "--limit", "1")
    assert "run-1" in tagged.output and "run-0" not in tagged.output
    none = run(runner, repo, "best", "--metric", "nope")
    assert "no run has" in none.output


def test_resume_lineage_delete(runner: CliRunner, repo: Repository, runs: list[str]) -> None:
    resumed = json.loads(run(runner, repo, "resume", runs[0], "--json").output)
    assert resumed["status"] == "pending"
    assert resumed["parent_experiment"] == runs[0]
    tree = run(runner, repo, "lineage", resumed["experiment_id"])
    assert tree.exit_code == 0, tree.output
    assert runs[0] in tree.output and resumed["experiment_id"] in tree.output
    chain = json.loads(run(runner, repo, "lineage", resumed["experiment_id"], "--json").output)
    assert [c["experiment_id"] for c in chain] == [runs[0], resumed["experiment_id"]]

    refused = run(runner, repo, "delete", runs[2], input="n\n")
    assert refused.exit_code != 0
    assert ExperimentTracker(repo).get(runs[2]).name == "run-2"
    deleted = run(runner, repo, "delete", runs[2], "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert not (repo.path / "experiments" / f"{runs[2]}.json").exists()
    missing = run(runner, repo, "show", runs[2])
    assert missing.exit_code == 1 and "no experiment" in missing.output


@pytest.mark.parametrize(
    "args",
    [
        ("show", "{id}"),
        ("show", "{id}", "--json"),
        ("compare", "{run}", "{id}"),
        ("resume", "{id}"),
        ("delete", "{id}", "--yes"),
        ("env", "{id}"),
        ("code", "{id}", "--into", "restored"),
        ("lineage", "{id}"),
        ("metrics", "{id}", "val_loss"),
    ],
)
@pytest.mark.parametrize("unknown", ["ffffffffffffffffffff", "ffff"])  # an id, a prefix
def test_an_unknown_run_id_is_a_clear_error_with_exit_status_1(
    runner: CliRunner, repo: Repository, runs: list[str], args: tuple[str, ...], unknown: str
) -> None:
    result = run(runner, repo, *(a.format(id=unknown, run=runs[0]) for a in args))
    assert result.exit_code == 1, result.output
    assert f"no experiment '{unknown}'" in result.output and "coralx exp list" in result.output
    assert "Traceback" not in result.output
    assert len(ExperimentTracker(repo).list()) == 3  # nothing was made or deleted


def test_summary_metrics_reindex(runner: CliRunner, repo: Repository, runs: list[str]) -> None:
    summary = json.loads(run(runner, repo, "summary", "--json").output)
    assert summary["total_experiments"] == 3
    assert summary["total_metrics_logged"] == 60
    assert "runs: 3" in run(runner, repo, "summary").output
    csv_out = run(runner, repo, "metrics", runs[0], "val_loss", "--csv").output.splitlines()
    assert csv_out[0] == "step,value,timestamp"
    assert csv_out[1].startswith("0,1.0,")
    assert len(csv_out) == 21
    values = json.loads(run(runner, repo, "metrics", runs[0], "val_loss", "--json").output)
    assert [v["step"] for v in values] == list(range(20))
    missing = run(runner, repo, "metrics", runs[0], "accuracy")
    assert missing.exit_code == 4 and "val_loss" in missing.output
    (repo.path / "index.sqlite").unlink()
    rebuilt = json.loads(run(runner, repo, "reindex", "--json").output)
    assert rebuilt["records"] == 3
    top = runner.invoke(cli, ["-C", str(repo.root), "reindex"])
    assert top.exit_code == 0 and "indexed 3 runs" in top.output


def test_ambiguous_prefix_lists_candidates(runner: CliRunner, repo: Repository) -> None:
    tracker = ExperimentTracker(repo)
    for suffix in ("1", "2"):
        tracker.start("r", experiment_id="0123456789abcdef000" + suffix)
        tracker.end()
    result = run(runner, repo, "show", "0123456789abcdef")
    assert result.exit_code == 2
    assert "0123456789abcdef0001" in result.output and "0123456789abcdef0002" in result.output


def test_sparkline() -> None:
    assert sparkline([]) == ""
    assert sparkline([1.0, float("nan"), 2.0]) == "▁█"
    assert len(sparkline(list(map(float, range(1000))), width=40)) == 40
    assert sparkline([3.0, 3.0]) == "▁▁"


def test_list_path_imports_nothing_heavy(repo: Repository, runs: list[str]) -> None:
    """`coralx exp list` must stay fast: its import path holds no pydantic, numpy, rich,
    dulwich or git."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from coralx.cli.main import main\n"
        "try:\n"
        "    main(['-C', sys.argv[1], 'exp', 'list', '--tag', 'bert'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('numpy', 'pydantic', 'rich', 'dulwich', 'git')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(repo.root)], capture_output=True, text=True, check=True
    ).stdout
    assert "run-0" in out
    assert out.strip().splitlines()[-1] == "[]"


def test_unreadable_record_is_skipped_and_counted(
    runner: CliRunner, repo: Repository, runs: list[str]
) -> None:
    (repo.path / "experiments" / ("f" * 20 + ".json")).write_text("")  # lost to a power cut
    result = json.loads(run(runner, repo, "reindex", "--json").output)
    named = result.pop("unreadable_files")
    assert result == {"indexed": 3, "removed": 0, "unreadable": 1, "records": 3, "recoverable": []}
    assert len(named) == 1 and "f" * 20 + ".json" in named[0]
    assert len(json.loads(run(runner, repo, "list", "--json").output)) == 3
