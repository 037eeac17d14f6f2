"""Shared fixtures: the running app (a real `python app.py` process) and a headless Chromium page."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tools.app_process import REPO_ROOT, launched_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT_DIR = REPO_ROOT / "artifacts" / "screenshots"


def pytest_collection_modifyitems(items):
    """Mark tests by what they need, so `make test-fast` can leave out the live app and the browser."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "browser" in fixtures:
            item.add_marker(pytest.mark.browser)
        if any(name.endswith("app_url") for name in fixtures):  # the shared app and ones a test starts itself
            item.add_marker(pytest.mark.app)


@pytest.fixture(scope="session")
def app_url(tmp_path_factory) -> str:
    """Launch `python app.py` on a free loopback port for the whole test session."""
    with launched_app([sys.executable, "app.py"], tmp_path_factory.mktemp("app") / "app.log") as url:
        yield url


@pytest.fixture(scope="session")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright; skipped (failed under CI=true) where it is missing."""
    if not Path(CHROMIUM).exists():
        message = "Chromium is missing: install it with `apt-get install -y chromium` (Debian)."
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_url):
    """A fresh browser page on the running app, 1400x1000; screenshots go to artifacts/screenshots."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(app_url)
    page.wait_for_selector("text=GenAI Playground", timeout=60_000)
    yield page
    context.close()
