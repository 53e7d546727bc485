"""The viewer in a real headless Chromium, against `coralx ui` started as a process."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("playwright")

from playwright.sync_api import expect

from coralx import Repository

from .browser import launch, require_browser, screenshot
from .conftest import HAS_GIT, git
from .ui_helpers import write_record
from .ui_server import UiServer, running_ui

pytestmark = pytest.mark.slow
XSS = "<script>alert(1)</script>"


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


HAS_TRACKER = _importable("coralx.experiments")
HAS_SWEEP = _importable("coralx.sweeps.runner")
HAS_STORE = hasattr(Repository, "stage_weights")
needs_tracker = pytest.mark.skipif(not HAS_TRACKER, reason="the tracker is not here")
needs_sweep = pytest.mark.skipif(not HAS_SWEEP, reason="the sweep runner is not here")
needs_store = pytest.mark.skipif(not HAS_STORE, reason="the weight store is not here")


def _tracked_runs(repo: Repository) -> dict[str, str]:
    """Three runs made by the tracker, with metrics, text and figures at several steps; the
    second commits three versions of its weights."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from coralx import Logger
    from coralx.experiments import ExperimentTracker

    tracker = ExperimentTracker(repo)
    ids = {}
    for key, name, tags, lr in [
        ("xss", XSS, ["bert"], 0.1),
        ("bert2", "bert-large", ["bert", "large"], 0.2),
        ("gpt", "gpt-small", ["gpt"], 0.3),
    ]:
        exp = tracker.start(name, params={"lr": lr}, tags=tags)
        log = Logger(tracker)
        weights = {"layer.weight": np.linspace(-1, 1, 4096, dtype=np.float32).reshape(64, 64)}
        for step in range(200):
            log.set_global_it(step)
            log.add_scalar("loss", 1.0 / (1 + lr * step))
            log.add_scalar("acc", 1.0 - 1.0 / (1 + lr * step))
            if key == "bert2" and HAS_STORE and step % 80 == 0:
                weights["layer.weight"][: step // 8] += 0.01
                repo.stage_weights(weights)
                repo.commit(f"{name} at step {step}")
        for step in range(0, 200, 50):
            log.set_global_it(step)
            log.add_text("sample", f"{XSS} at {step}")
            fig, ax = plt.subplots(figsize=(3, 2))
            ax.plot(range(step + 2))
            log.add_figure("curve", fig)
            plt.close(fig)
        tracker.end()
        ids[key] = exp.experiment_id
    return ids


@pytest.fixture(scope="module")
def browser_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo sweep (when the sweep runner is here) plus three tracked runs, or records
    written by hand when only the viewer is here."""
    require_browser()
    root = tmp_path_factory.mktemp("browser-store")
    if HAS_GIT:
        # A git work tree with an uncommitted change: runs record the commit and a snapshot.
        git(root, "init", "-q", "-b", "main")
        (root / "train.py").write_text("lr = 0.1\nprint('training')\n")
        git(root, "add", "train.py")
        git(root, "commit", "-q", "-m", "first")
        (root / "train.py").write_text("lr = 0.2  # tuned\nprint('training')\n")
    sweep_id = None
    if HAS_SWEEP:
        from .ui_demo_sweep import make_demo_store

        demo = make_demo_store(root)
        repo, sweep_id = demo["repo"], demo["sweep_id"]
    else:
        repo = Repository.init(root)
    if HAS_TRACKER:
        ids = _tracked_runs(repo)
    else:
        ids = {
            "xss": write_record(repo, name=XSS, tags=["bert"], params={"lr": 0.1}),
            "bert2": write_record(
                repo, name="bert-large", tags=["bert", "large"], params={"lr": 0.2}
            ),
            "gpt": write_record(repo, name="gpt-small", tags=["gpt"], params={"lr": 0.3}),
        }
    return {"root": root, "ids": ids, "repo": repo, "sweep_id": sweep_id}


@pytest.fixture(scope="module")
def server(browser_store: dict[str, Any]) -> Iterator[UiServer]:
    with running_ui(browser_store["root"]) as ui:
        yield ui


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory, server: UiServer) -> Iterator[Any]:
    yield from launch(tmp_path_factory.mktemp("chromium"))


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss())
    )
    page.problems = problems
    yield page
    page.close()
    assert not problems, problems


def _open(page: Any, server: UiServer, path: str) -> None:
    page.goto(server.url.rstrip("/") + path)
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)


def test_runs_page_filters_by_tag(page: Any, server: UiServer, browser_store: dict) -> None:
    ids = browser_store["ids"]
    _open(page, server, "/")
    rows = page.locator("#runs-table tbody tr")
    expect(rows).to_have_count(3 + (9 if HAS_SWEEP else 0))
    # A run named like a script is shown as text, and no dialog opened (checked by `page`).
    assert page.locator("#runs-table td.name a", has_text=XSS).count() == 1
    screenshot(page, "runs")
    page.select_option("select[name=tag]", "bert")
    expect(rows).to_have_count(2)
    shown = set(
        page.locator("#runs-table tbody tr").evaluate_all("rs => rs.map(r => r.dataset.id)")
    )
    assert shown == {ids["xss"], ids["bert2"]}
    assert "tag=bert" in page.url
    page.fill("input[name=name]", "bert-*")
    page.press("input[name=name]", "Enter")
    expect(rows).to_have_count(1)
    assert page.locator("#runs-table tbody tr").get_attribute("data-id") == ids["bert2"]


def test_runs_page_filter_box(page: Any, server: UiServer, browser_store: dict) -> None:
    """The filter box takes the language of `coralx exp list --where`, and says where a
    filter that does not parse goes wrong."""
    ids = browser_store["ids"]
    _open(page, server, "/")
    rows = page.locator("#runs-table tbody tr")
    page.fill("#where", "params.lr >= 0.2 and not tags.large and not tags.demo")
    page.press("#where", "Enter")
    expect(rows).to_have_count(1)
    assert rows.get_attribute("data-id") == ids["gpt"]
    assert "where=" in page.url
    page.fill("#where", "params.lr >")
    page.press("#where", "Enter")
    expect(page.locator("#where-error")).to_contain_text("column 12")


def test_compare_two_runs(page: Any, server: UiServer, browser_store: dict) -> None:
    ids = browser_store["ids"]
    _open(page, server, "/")
    for run in ("xss", "gpt"):
        page.locator(f"#runs-table tr[data-id='{ids[run]}'] input[type=checkbox]").check()
    page.click("#compare")
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    assert "/compare?ids=" in page.url
    header = page.locator("#differing-params thead th")
    assert header.count() == 3
    lr = page.locator("#differing-params tbody tr").first
    assert lr.locator("th").inner_text() == "lr"
    assert [c.strip() for c in lr.locator("td").all_inner_texts()] == ["0.1", "0.3"]


def test_unknown_run_shows_404_page(page: Any, server: UiServer) -> None:
    response = page.goto(server.url + "runs/ffffffffffffffffffff")
    assert response.status == 404
    assert page.locator("h1").inner_text() == "Not found"


def test_run_page_shows_user_strings_as_text(
    page: Any, server: UiServer, browser_store: dict
) -> None:
    _open(page, server, f"/runs/{browser_store['ids']['xss']}")
    assert page.locator("h1").inner_text().startswith(XSS)
    assert page.locator("main script").count() == 0


def _traces(chart: Any) -> int:
    return int(chart.locator(".scatterlayer .trace").count())


@needs_tracker
def test_run_page_draws_charts_and_steps_figures(
    page: Any, server: UiServer, browser_store: dict
) -> None:
    _open(page, server, f"/runs/{browser_store['ids']['bert2']}")
    charts = page.locator("#charts .chart")
    expect(charts).to_have_count(2)
    for i in range(2):
        expect(charts.nth(i).locator(".scatterlayer .trace")).to_have_count(1)
    assert sorted(charts.locator(".plot").evaluate_all("ps => ps.map(p => p.dataset.metric)")) == [
        "acc",
        "loss",
    ]
    figure = page.locator(".figure[data-tag=curve]")
    view = figure.locator(".figure-view")
    expect(view).to_have_attribute("data-step", "150")
    last_src = view.locator("img").get_attribute("src")
    slider = figure.locator("input.step-slider")
    slider.fill("1")  # a range input: fill sets its value and fires input
    expect(view).to_have_attribute("data-step", "50")
    expect(figure.locator(".step-label")).to_have_text("step 50 (2/4)")
    assert view.locator("img").get_attribute("src") != last_src
    text = page.locator(".text-tag[data-tag=sample]")
    expect(text.locator("pre")).to_have_text(f"{XSS} at 150")
    text.locator("input.step-slider").fill("0")
    expect(text.locator("pre")).to_have_text(f"{XSS} at 0")
    if HAS_GIT:
        expect(page.locator("#diff")).to_contain_text("+lr = 0.2  # tuned")
    page.keyboard.press("Home")
    screenshot(page, "run")


@needs_tracker
def test_compare_draws_one_trace_per_run(page: Any, server: UiServer, browser_store: dict) -> None:
    ids = browser_store["ids"]
    _open(page, server, f"/compare?ids={ids['xss']},{ids['gpt']}")
    charts = page.locator("#charts .chart")
    expect(charts).to_have_count(2)
    expect(charts.first.locator(".scatterlayer .trace")).to_have_count(2)
    plot = charts.first.locator(".plot")
    expect(plot).to_have_attribute("data-scale", "linear")
    charts.first.locator("input.log-toggle").check()
    expect(plot).to_have_attribute("data-scale", "log")
    screenshot(page, "compare")


@needs_tracker
def test_running_run_updates_itself(page: Any, server: UiServer, browser_store: dict) -> None:
    from coralx.experiments import ExperimentTracker
    from coralx.records import media

    tracker = ExperimentTracker(browser_store["repo"], capture_code=False)
    exp = tracker.start("live-run", tags=["live"])
    try:
        for step in range(10):
            tracker.log("loss", 1.0 / (step + 1), step=step)
        tracker.flush()
        _open(page, server, f"/runs/{exp.experiment_id}")
        chart = page.locator("#charts .chart").first
        expect(chart).to_have_attribute("data-total", "10")
        for step in range(10, 25):
            tracker.log("loss", 1.0 / (step + 1), step=step)
        tracker.flush()
        expect(chart).to_have_attribute("data-total", "25", timeout=3_000)
        media.log_text(tracker, "progress", "half way", step=25)
        expect(page.locator(".text-tag[data-tag=progress] pre")).to_have_text(
            "half way", timeout=3_000
        )
    finally:
        tracker.end()
    expect(page.locator("h1 .status")).to_have_text("completed", timeout=3_000)


@needs_sweep
def test_sweep_page_grid(page: Any, server: UiServer, browser_store: dict) -> None:
    _open(page, server, f"/sweeps/{browser_store['sweep_id']}")
    expect(page.locator("#sweep-grid .heatmaplayer")).to_have_count(1)
    expect(page.locator("#verdict")).to_have_text("supports")
    counts = page.locator("#status-counts").inner_text()
    assert "completed" in counts and "failed" in counts
    expect(page.locator("#cells tbody tr")).to_have_count(9)
    screenshot(page, "sweep")
    page.locator("#cells tbody tr").first.locator("a.run-link").click()
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    expect(page.locator("#charts .chart")).to_have_count(3)
    expect(page.locator(".figure[data-tag=activations] .figure-view img")).to_have_count(1)


@needs_store
@needs_tracker
def test_weights_page(page: Any, server: UiServer, browser_store: dict) -> None:
    _open(page, server, "/weights")
    rows = page.locator("#weight-log tbody tr")
    expect(rows).to_have_count(4)  # three commits of bert-large and the store's root commit
    rows.first.click()
    expect(page.locator("#tensor-diff tbody tr")).to_have_count(1)
    expect(page.locator("#tensor-diff tbody td").nth(1)).to_have_text("changed")
    screenshot(page, "weights")
