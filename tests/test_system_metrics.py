"""System metrics sampled on a background thread into ``system/...`` metrics of a run."""

from __future__ import annotations

import threading
import time

import pytest

from coralx import Repository
from coralx.experiments import ExperimentTracker
from coralx.records import system


def _sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "coralx-system"]


def _busy(tracker: ExperimentTracker, seconds: float) -> None:
    """A training loop: bursts of logging between steps that let other threads run (as a
    GPU step or data loading does; a loop that never releases the GIL starves every
    thread, sampling included)."""
    deadline = time.monotonic() + seconds
    step = 0
    while time.monotonic() < deadline:
        for _ in range(100):
            tracker.log("loss", 1.0 / (step + 1), step=step)
            step += 1
        time.sleep(0.002)


def test_sampled_while_running_and_stopped_with_the_run(repo: Repository) -> None:
    pytest.importorskip("psutil")
    repo.config["tracker"] = {"system_metrics_interval": 0.05}
    tracker = ExperimentTracker(repo, capture_code=False)
    exp = tracker.start("sampled", system_metrics=True)
    _busy(tracker, 0.5)
    tracker.end()
    assert not _sampler_threads()
    summary = exp.metrics_summary
    for name in ("system/cpu_percent", "system/memory_percent", "system/process_rss_mb",
                 "system/process_cpu_percent", "system/process_threads"):  # fmt: skip
        assert summary[name]["count"] >= 2, name
    assert 0 < summary["system/process_rss_mb"]["min"] < 1e6
    assert 0 <= summary["system/memory_percent"]["max"] <= 100
    history = exp.get_metric_history("system/process_rss_mb")
    assert [m.step for m in history] == list(range(len(history)))
    # Nothing is appended after end(): the journal holds exactly what the summary counted.
    stored = tracker.get_or_raise(exp.experiment_id)
    assert (
        len(stored.get_metric_history("system/cpu_percent"))
        == summary["system/cpu_percent"]["count"]
    )


def test_default_from_config_toml(tmp_path) -> None:
    pytest.importorskip("psutil")
    repo = Repository(tmp_path / "p", init=True)
    config = repo.path / "config.toml"
    config.write_text(
        config.read_text() + "\n[tracker]\nsystem_metrics = true\nsystem_metrics_interval = 0.05\n"
    )
    tracker = ExperimentTracker(Repository(tmp_path / "p"), capture_code=False)
    on = tracker.start("from-config")
    _busy(tracker, 0.3)
    tracker.end()
    assert "system/cpu_percent" in on.metrics_summary
    off = tracker.start("asked-off", system_metrics=False)
    _busy(tracker, 0.2)
    tracker.end()
    assert not [k for k in off.metrics_summary if k.startswith("system/")]


def test_off_by_default(repo: Repository) -> None:
    tracker = ExperimentTracker(repo, capture_code=False)
    exp = tracker.start("plain")
    assert tracker._sampler is None
    tracker.end()
    assert list(exp.metrics_summary) == []


def test_a_failing_or_missing_source_is_silent(repo: Repository, monkeypatch) -> None:
    calls = []

    def broken() -> dict[str, float]:
        calls.append(1)
        raise RuntimeError("sensor gone")

    def works() -> dict[str, float]:
        return {"system/fake": 1.0}

    monkeypatch.setattr(system, "sources", lambda: [broken, works])
    repo.config["tracker"] = {"system_metrics_interval": 0.02}
    tracker = ExperimentTracker(repo, capture_code=False)
    exp = tracker.start("broken", system_metrics=True)
    time.sleep(0.2)
    tracker.end()
    assert calls and exp.status == "completed"
    assert exp.metrics_summary["system/fake"]["count"] >= 2
    monkeypatch.setattr(system, "sources", lambda: [])
    nothing = tracker.start("no-sources", system_metrics=True)
    time.sleep(0.1)
    assert not _sampler_threads()  # nothing to sample: the thread ended by itself
    tracker.end()
    assert nothing.status == "completed"


def test_nvml_without_a_gpu_gives_no_source() -> None:
    sources = system._nvml_sources()
    for source in sources:  # on a machine with GPUs: each gives numbers
        assert all(isinstance(v, float) for v in source().values())
