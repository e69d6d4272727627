"""The board's inline first screen in a real browser (Debian's Chromium driven by Playwright), against the
app served by uvicorn without its lifespan, its read model fed through the pure lifecycle (no broker):
the first rows are there with no script at all, and the script takes those very nodes over — ticking
their countdowns, keeping them through the stream's snapshot, no row twice, no JavaScript error."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import uvicorn

from playbooks.plan import load_plan
from services.settings import Settings
from services.users import new_token, user_record
from services.view import IncidentView
from services.web.app import create_app
from services.web.board import BoardQuery, board_snapshot
from tests.pages.test_duty_pages import free_port
from tests.services.test_board_trends import feed, sent
from topics.models import Role

STREETS = ("宋庄镇", "梨园镇", "台湖镇")
# at document 'interactive' (parsed, before the deferred scripts run): the rows the server drew, marked
FIGURES = """() => Object.fromEntries(['sum-open', 'sum-l1', 'sum-l2', 'sum-l3', 'sum-breach', 'sum-due', 'shown-count',
  'count-live', 'count-drill', 'count-all'].map((id) => [id, document.getElementById(id).textContent]))"""
MARK_INLINE = "const FIGURES = " + FIGURES + ";\n" + """document.addEventListener('readystatechange', () => {
  if (document.readyState !== 'interactive') return;
  const trs = [...document.querySelectorAll('#rows tr.inc')];
  for (const tr of trs) tr.__inline = true;
  window.__inline = trs.map((tr) => tr.dataset.id);
  window.__figures = FIGURES();
});"""


@pytest.fixture(scope="module")
def board_site(tmp_path_factory) -> Iterator[tuple[str, str, IncidentView]]:
    """120 open incidents (every third overdue, some 一级), three streets, served without a broker."""
    plan = load_plan()
    now = datetime.now(timezone.utc)
    view = IncidentView()
    for i in range(120):
        old = i % 3 == 0
        feed(view, plan, f"fs{i:03d}", now - (timedelta(hours=3) if old else timedelta(seconds=20 + i)),
             facts={"deaths": 3} if i % 9 == 0 else None, breach_at=now if old else None, street=STREETS[i % 3])
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("board-first"), bootstrap_servers="127.0.0.1:1"), view=view)
    token = new_token()
    app.state.users.apply(user_record("fs-duty", Role.DUTY_OFFICER, token, now=now, by="test"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", token, view
    server.should_exit = True
    thread.join(timeout=10)


def signed_in(browser, site, *, script: bool = True):
    url, token, _ = site
    ctx = browser.new_context(viewport={"width": 1600, "height": 900}, locale="zh-CN", timezone_id="Asia/Shanghai",
                              java_script_enabled=script)
    ctx.add_cookies([{"name": "yingji_token", "value": token, "url": url}])
    return ctx


def drawn(page) -> list[str]:
    return page.evaluate("() => [...document.querySelectorAll('#rows tr.inc')].map((tr) => tr.dataset.id)")


def stream_first(view: IncidentView, query: str) -> list[str]:
    from starlette.datastructures import QueryParams

    return [r["id"] for r in sent(board_snapshot(view, BoardQuery.from_params(QueryParams(query))))[0][1]["rows"]]


def test_the_first_rows_show_with_no_script_at_all(browser, board_site):
    url, _, view = board_site
    ctx = signed_in(browser, board_site, script=False)
    try:
        page = ctx.new_page()
        page.goto(url + "/board?street=宋庄镇")
        ids = drawn(page)
        assert len(ids) == 30 and ids == stream_first(view, "street=宋庄镇")[:30]
        assert page.locator("#rows tr.inc").first.is_visible()
        assert set(page.evaluate("() => [...document.querySelectorAll('#rows tr.inc td.place .cell > div')].map(d => d.textContent)")) == {"宋庄镇"}
        assert page.locator("#rows tr.inc").first.locator("td").first.inner_text() == "一级响应"
    finally:
        ctx.close()


def test_the_script_takes_the_drawn_rows_over_and_keeps_them_through_the_stream(browser, board_site):
    url, _, _ = board_site
    ctx = signed_in(browser, board_site)
    errors: list[str] = []
    ctx.on("weberror", lambda e: errors.append(str(e.error)))
    try:
        ctx.add_init_script(MARK_INLINE)
        page = ctx.new_page()
        page.goto(url + "/board?street=梨园镇")
        page.locator("#conn[data-state=live]").wait_for(timeout=15_000)
        inline = page.evaluate("() => window.__inline")
        assert len(inline) == 30
        ids = drawn(page)
        assert len(ids) == len(set(ids)) and ids == inline[:len(ids)], (ids, inline)
        # the rows in view are the very nodes the server drew: not redrawn by the script or the stream
        kept = page.evaluate("() => [...document.querySelectorAll('#rows tr.inc')].map((tr) => tr.__inline === true)")
        assert kept and all(kept), kept
        assert page.locator("#shown-count").inner_text() == "40"
        # the figures drawn with the rows are those the script counts once every row has come
        drawn_figures = page.evaluate("() => window.__figures")
        assert drawn_figures == page.evaluate(FIGURES) and drawn_figures["count-live"] == "120", drawn_figures
        # their countdowns tick: a chip of a young incident (梨园镇's are) counts down from what the server wrote
        young = ids[0]
        cd = page.locator(f'#rows tr.inc[data-id="{young}"] .chip[data-status="open"] .cd').first
        before = cd.inner_text()
        assert before.startswith("剩 ")
        page.wait_for_timeout(2200)
        assert cd.inner_text() != before
        assert page.evaluate(f"() => document.querySelector('#rows tr.inc[data-id=\"{young}\"]').__inline") is True
    finally:
        ctx.close()
    assert errors == [], f"JavaScript errors on the board: {errors}"


def test_a_view_from_the_pages_own_memory_replaces_the_drawn_rows(browser, board_site):
    """The URL says nothing, the server draws 实战; the page's localStorage says 演练: the page's own
    view wins and the live rows go (there are no drill incidents here)."""
    url, _, _ = board_site
    ctx = signed_in(browser, board_site)
    errors: list[str] = []
    ctx.on("weberror", lambda e: errors.append(str(e.error)))
    try:
        ctx.add_init_script("if (location.protocol === 'http:') localStorage.setItem('yj.board.filter', 'drill')")
        page = ctx.new_page()
        page.goto(url + "/board")
        page.locator("#conn[data-state=live]").wait_for(timeout=15_000)
        assert drawn(page) == [] and page.locator("#shown-count").inner_text() == "0"
        assert "view=drill" in page.url
    finally:
        ctx.close()
    assert errors == [], f"JavaScript errors on the board: {errors}"
