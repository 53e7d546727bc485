"""The run page's environment and system metrics: the API, and the page in a real browser."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient

from coralx import Repository, environment
from coralx.experiments import ExperimentTracker
from coralx.web.app import create_app


def _runs(repo: Repository) -> dict[str, str]:
    repo.config["tracker"] = {"system_metrics_interval": 0.05}
    tracker = ExperimentTracker(repo, capture_code=False)
    exp = tracker.start("with-system", system_metrics=True)
    for step in range(30):
        tracker.log("loss", 1.0 / (step + 1), step=step)
        time.sleep(0.01)
    tracker.end()
    bare = ExperimentTracker(repo, capture_code=False, capture_environment=False)
    plain = bare.start("no-environment")
    bare.end()
    return {"system": exp.experiment_id, "plain": plain.experiment_id}


def test_environment_api(repo: Repository) -> None:
    ids = _runs(repo)
    client = TestClient(create_app(repo))
    got = client.get(f"/api/runs/{ids['system'][:12]}/environment")
    assert got.status_code == 200
    assert got.json()["environment"] == environment.capture()
    assert client.get(f"/api/runs/{ids['plain']}/environment").json() == {"environment": None}
    reqs = client.get(f"/api/runs/{ids['system']}/requirements.txt")
    assert reqs.status_code == 200 and "attachment" in reqs.headers["content-disposition"]
    assert reqs.text == environment.requirements(
        environment.capture(), title=f"environment of run {ids['system']}"
    )
    assert client.get(f"/api/runs/{ids['plain']}/requirements.txt").status_code == 404
    assert client.get("/api/runs/ffffffffffff/environment").status_code == 404
    run = client.get(f"/api/runs/{ids['system']}").json()
    assert any(name.startswith("system/") for name in run["metric_names"])


@pytest.mark.slow
def test_run_page_shows_environment_and_system_metrics(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    pytest.importorskip("playwright")
    pytest.importorskip("psutil")
    from playwright.sync_api import expect

    from .browser import launch, screenshot
    from .ui_server import running_ui

    repo = Repository(tmp_path / "store", init=True)
    ids = _runs(repo)
    env = environment.capture()
    with running_ui(repo.root) as ui:
        contexts: Iterator[Any] = launch(tmp_path)
        context = next(contexts)
        try:
            page = context.new_page()
            page.goto(ui.url + f"runs/{ids['system']}")
            expect(page.locator("body[data-loaded=true]")).to_have_count(1, timeout=30_000)
            card = page.locator("#environment")
            expect(card).to_contain_text(f"{env['python']['version']} (CPython)")
            expect(card).to_contain_text(f"{len(env['packages'])} packages")
            expect(page.locator("#packages tr")).to_have_count(len(env["packages"]))
            system = page.locator("#system-charts .plot")
            assert system.count() >= 5
            names = [system.nth(i).get_attribute("data-metric") for i in range(system.count())]
            assert all(n.startswith("system/") for n in names)
            user = page.locator("#charts .plot")
            assert [user.nth(i).get_attribute("data-metric") for i in range(user.count())] == [
                "loss"
            ]
            screenshot(page, "run-environment")
            page.goto(ui.url + f"runs/{ids['plain']}")
            expect(page.locator("body[data-loaded=true]")).to_have_count(1, timeout=30_000)
            expect(page.locator("#environment")).to_contain_text("recorded no environment")
            assert page.locator("#system-charts .plot").count() == 0
        finally:
            with pytest.raises(StopIteration):
                next(contexts)
