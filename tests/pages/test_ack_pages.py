"""已阅 (issue 19 item 3) in a real browser (Debian's Chromium driven by Playwright), against an app built
from its own parts and served by uvicorn: the incident view fed the lifecycle's own records of a
燃气事故 (five units told), a publisher that keeps what it sends, a simulated clock. No broker.

The ack link's page shows the notice and one 「已阅」 button, and clicking it shows the confirmation;
the incident page shows 已发送 / 已送达 / 已阅 per unit as records of topic deliveries are folded into
the view, live (the page never reloads), and its own 「已阅」 button acknowledges for the signed-in user."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
import uvicorn

from services.delivery.tokens import make_token
from tests.pages.test_duty_pages import free_port, shot, sign_in
from tests.services.test_ack_api import INCIDENT, NOTICE, NOW, build, event_bytes, sent_record
from topics.catalog import DELIVERIES
from topics.delivery import AckHow, AckRecord, DeliveryState, Undeliverable, ack_id, undeliverable_id
from topics.models import Role

STREET_NOTICE = f"{INCIDENT}.town_liyuan.notify.street"


@dataclass
class Site:
    url: str
    app: object
    tokens: dict
    loop: asyncio.AbstractEventLoop

    def apply(self, value: bytes) -> None:
        """A deliveries record read by the view, on the server's loop (as its consumer would: the view's
        subscribers' queues belong to that loop)."""
        done = threading.Event()
        self.loop.call_soon_threadsafe(lambda: (self.app.state.view.apply(DELIVERIES.name, value), done.set()))
        assert done.wait(5)


@pytest.fixture
def site(tmp_path) -> Iterator[Site]:
    """The app served by uvicorn on a loop of its own thread, without its lifespan (no broker)."""
    app, tokens = build(tmp_path)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    loops: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        loops.append(asyncio.get_running_loop())
        await server.serve()

    # asyncio.run, as server.run does: the streams' tasks left at the end are cancelled, not abandoned
    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield Site(f"http://127.0.0.1:{port}", app, tokens, loops[0])
    server.should_exit = True
    thread.join(timeout=10)


def test_the_ack_link_shows_the_notice_and_the_button_acknowledges(site, context):
    from playwright.sync_api import expect

    token = make_token(NOTICE, "zhang", NOW - timedelta(minutes=5), site.app.state.ack_key)
    page = context.new_page()  # no sign-in: the link is its own credential
    page.goto(f"{site.url}/ack/{token}")
    expect(page).to_have_title(re.compile("通知确认"))
    card = page.locator("#ack")
    expect(card.get_by_role("heading")).to_have_text("事件通报")
    expect(page.locator("#ack-unit")).to_have_text("区应急办")
    expect(card).to_contain_text(INCIDENT)
    expect(card).to_contain_text("2026-11-25 09:31:00（北京时间）")
    button = page.get_by_role("button", name="已阅")
    expect(button).to_have_count(1)
    shot(page, "ack-01-link")
    assert site.app.state.publisher.records == []  # opening the link acknowledged nothing

    button.click()
    expect(page).to_have_url(f"{site.url}/ack/{token}")  # 303 back to the page: a reload sends nothing
    expect(page.locator("#ack-done")).to_have_text("已确认已阅：张伟，2026-11-25 09:40:00（北京时间，经通知链接）。")
    expect(page.get_by_role("button", name="已阅")).to_have_count(0)
    shot(page, "ack-02-done")
    [(_, key, event)] = site.app.state.publisher.records
    assert key == NOTICE and event.body.id == ack_id(NOTICE, "zhang", "link") and event.body.how == AckHow.LINK
    page.reload()
    expect(page.locator("#ack-done")).to_be_visible()
    assert len(site.app.state.publisher.records) == 1

    # a forged link: refused, said so, no button
    page.goto(f"{site.url}/ack/{token[:-3]}xyz")
    expect(page.get_by_role("heading", name="链接无效")).to_be_visible()
    expect(page.get_by_role("button", name="已阅")).to_have_count(0)


def test_the_incident_page_shows_sent_delivered_and_read_per_unit_live(site, context):
    from playwright.sync_api import expect

    page = context.new_page()
    sign_in(page, site, Role.COMMANDER, f"/incidents/{INCIDENT}/page")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    table = page.locator("#deliveries")
    office = table.locator(f'tr[data-notice="{NOTICE}"]')
    expect(table.locator("tbody tr")).to_have_count(5)
    expect(office).to_contain_text("区应急办")
    expect(office.locator('[data-col="sent"]')).to_have_text("—")
    expect(office.locator('[data-col="notes"]')).to_have_text("待发送")

    t = NOW - timedelta(minutes=8)  # 09:32 北京时间
    site.apply(sent_record(t + timedelta(seconds=2), DeliveryState.ACCEPTED))
    expect(office.locator('[data-col="sent"]')).to_have_text("已发送 09:32:02")
    site.apply(sent_record(t + timedelta(seconds=9), DeliveryState.DELIVERED))
    expect(office.locator('[data-col="delivered"]')).to_have_text("已送达 09:32:09")
    expect(office.locator('[data-col="acked"]')).to_have_text("—")
    ack = AckRecord(id=ack_id(NOTICE, "zhang", "link"), dedup_key=NOTICE, incident_id=INCIDENT, person_id="zhang",
                    at=t + timedelta(minutes=1), how=AckHow.LINK, by="link")
    site.apply(event_bytes(ack))
    expect(office.locator('[data-col="acked"]')).to_have_text("已阅 09:33:00")
    expect(office.get_by_role("button", name="已阅")).to_have_count(0)
    street = table.locator(f'tr[data-notice="{STREET_NOTICE}"]')
    site.apply(event_bytes(Undeliverable(id=undeliverable_id(STREET_NOTICE, 0), dedup_key=STREET_NOTICE,
                                         incident_id=INCIDENT, reason="no contact on any channel", at=t)))
    expect(street.locator('[data-col="notes"]')).to_contain_text("发送失败/无法送达")
    shot(page, "ack-03-incident")

    # the commander acknowledges 梨园镇's notice from the page
    street.get_by_role("button", name="已阅").click()
    expect(street.locator('[data-col="acked"]')).to_have_text("已阅 09:40:00")
    expect(page.locator("#action-ok")).to_contain_text("已阅：已记录")
    [(_, key, event)] = site.app.state.publisher.records
    assert (key, event.body.how, event.body.by, event.body.person_id) == (STREET_NOTICE, AckHow.PAGE, "u-commander", None)


def test_a_viewer_sees_the_statuses_without_the_button(site, context):
    from playwright.sync_api import expect

    page = context.new_page()
    sign_in(page, site, Role.VIEWER, f"/incidents/{INCIDENT}/page")
    expect(page.locator("#deliveries tbody tr")).to_have_count(5)
    expect(page.locator("#deliveries").get_by_role("button")).to_have_count(0)
