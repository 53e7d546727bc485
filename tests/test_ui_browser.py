"""The viewer in a real headless Chromium, against `coralx ui` started as a process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("playwright")

from playwright.sync_api import expect

from coralx import Repository

from .browser import launch, require_browser, screenshot
from .ui_helpers import write_record
from .ui_server import UiServer, running_ui

pytestmark = pytest.mark.slow
XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def browser_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_browser()
    root = tmp_path_factory.mktemp("browser-store")
    repo = Repository.init(root)
    ids = {
        "xss": write_record(repo, name=XSS, tags=["bert"], params={"lr": 0.1}),
        "bert2": write_record(repo, name="bert-large", tags=["bert", "large"], params={"lr": 0.2}),
        "gpt": write_record(repo, name="gpt-small", tags=["gpt"], params={"lr": 0.3}),
    }
    return {"root": root, "ids": ids}


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
    assert rows.count() == 3
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
    screenshot(page, "compare")


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
