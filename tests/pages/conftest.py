"""Chromium for the page tests: Debian's, driven by Playwright (its own browser download cannot work here)."""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--lang=zh-CN"]


@pytest.fixture(scope="package")
def browser():
    """One Chromium for every page test (each test has a fresh context of its own: `context`), closed
    when tests/pages is done: the sync Playwright's loop is gone before the asyncio tests that follow."""
    from playwright import sync_api as playwright_api

    if not Path("/usr/bin/chromium").exists():
        pytest.fail("Debian's chromium is not installed: run `make test`, which installs it")
    # expect() waits 15 s, not Playwright's 5: a page that reads back what the broker just took can need
    # more on two cores shared with brokers, workers and other stacks (a drill warning's page did, at load 16)
    playwright_api.expect.set_options(timeout=15_000)
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1600, "height": 900}, locale="zh-CN", timezone_id="Asia/Shanghai")
    errors: list[str] = []
    ctx.on("weberror", lambda e: errors.append(str(e.error)))
    yield ctx
    ctx.close()
    assert errors == [], f"JavaScript errors on the pages: {errors}"
