"""A headless Chromium for the browser tests: Debian's package driven by Playwright.

Playwright never downloads a browser here: it is pointed at the system's Chromium. Tests that
need it skip, saying why, only where no Chromium is installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = Path(
    os.environ.get("CORALX_TEST_OUTPUT")
    or Path(__file__).resolve().parent.parent / "build" / "test-output"
)


def chromium_path() -> str | None:
    for candidate in (
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_browser() -> str:
    """The Chromium executable, or skip the test with the reason."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is not installed: pip install -e '.[dev]'")
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium: install Debian's package with `apt-get install chromium`")
    return path


def launch(tmp_dir: Path) -> Iterator[Any]:
    """A Playwright browser on the system Chromium, with a fresh profile folder."""
    from playwright.sync_api import sync_playwright

    executable = require_browser()
    profile = tmp_dir / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under the tests' output folder (and, when
    CORALX_UI_SCREENSHOTS names a folder, there too: that is how docs/img is made)."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"ui-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    extra = os.environ.get("CORALX_UI_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(extra) / f"{name}.png"), full_page=True)
    return path
