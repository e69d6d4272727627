"""Verified contacts and what became of the notices (issue 19 items 2 and 6) in a real browser (Debian's
Chromium driven by Playwright), against apps built from their own parts and served by uvicorn. No broker.

The 值班表 page: beside each person on duty now, 「联系方式未核实」 until they acknowledge a test message,
then 「已核实 HH:MM」 (the date in its title); a duty.manage user's 「发送测试消息」 posts one and says so.
The board: each incident row's red 「无法送达 N」 and 「未阅 N」, live as deliveries are folded."""

from __future__ import annotations

from datetime import timedelta

from tests.pages.test_ack_pages import site as ack_site  # noqa: F401 - the fixture
from tests.pages.test_duty_pages import NOW, red_dominant, shot, sign_in, site  # noqa: F401 - the fixture
from tests.services.test_ack_api import INCIDENT, NOTICE, event_bytes
from topics.catalog import DELIVERIES, NOTIFICATIONS_REQUESTED
from topics.delivery import AckHow, AckRecord, Undeliverable, ack_id, undeliverable_id
from topics.models import Role


def ack_bytes(dedup_key: str, person_id: str, at, incident: str = "test") -> bytes:
    return event_bytes(AckRecord(id=ack_id(dedup_key, person_id, "link"), dedup_key=dedup_key, incident_id=incident,
                                 person_id=person_id, at=at, how=AckHow.LINK, by="link"))


def test_the_badges_and_the_test_message_button_on_the_duty_page(site, context):  # noqa: F811
    from playwright.sync_api import expect

    page = context.new_page()
    sign_in(page, site, Role.ADMIN, "/duty/district_emergency_office")
    now = page.locator("#now")
    posts = now.locator(".post-now")
    expect(posts).to_have_count(3)
    expect(now.locator(".badge.unverified")).to_have_count(3)
    expect(now.locator(".badge.unverified").first).to_have_text("联系方式未核实")
    buttons = now.get_by_role("button", name="发送测试消息")
    expect(buttons).to_have_count(3)
    officer = now.locator('.post-now[data-post="officer"]')
    person_id = officer.get_by_role("button", name="发送测试消息").get_attribute("data-person")
    officer.get_by_role("button", name="发送测试消息").click()
    expect(page.locator("#test-ok")).to_have_text("测试消息已发出，请对方点「已阅」")
    [(topic, key, note)] = site.publisher.sent
    assert topic == NOTIFICATIONS_REQUESTED.name and note.kind == "test" and note.on_duty.person_id == person_id
    shot(page, "verify-01-sent")

    # the person's 已阅 of it, read by the view: verified, with the time and, in the title, the date
    site.app.state.view.apply(DELIVERIES.name, ack_bytes(key, person_id, NOW - timedelta(minutes=7)))
    page.reload()
    badge = officer.locator(".badge.verified")
    expect(badge).to_have_text("已核实 09:53")
    expect(badge).to_have_attribute("title", "联系方式已核实：2026-11-25 09:53 已阅测试消息")
    expect(now.locator(".badge.unverified")).to_have_count(2)
    shot(page, "verify-02-verified")


def test_a_viewer_sees_the_badges_but_no_button(site, context):  # noqa: F811
    from playwright.sync_api import expect

    page = context.new_page()
    sign_in(page, site, Role.VIEWER, "/duty/district_emergency_office")
    expect(page.locator("#now .badge.unverified")).to_have_count(3)
    expect(page.get_by_role("button", name="发送测试消息")).to_have_count(0)


def test_the_board_shows_notices_undeliverable_and_unread_live(ack_site, context):  # noqa: F811
    from playwright.sync_api import expect

    page = context.new_page()
    sign_in(page, ack_site, Role.COMMANDER, "/board")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    row = page.locator(f'tr[data-id="{INCIDENT}"]')
    expect(row.locator(".chip.notice.unacked")).to_have_text("未阅 5")
    expect(row.locator(".chip.notice.undeliverable")).to_have_count(0)
    street = f"{INCIDENT}.town_liyuan.notify.street"
    t = NOW - timedelta(minutes=5)
    ack_site.apply(event_bytes(Undeliverable(id=undeliverable_id(street, 0), dedup_key=street, incident_id=INCIDENT,
                                             reason="no contact on any channel", at=t)))
    chip = row.locator(".chip.notice.undeliverable")
    expect(chip).to_have_text("无法送达 1")
    assert red_dominant(chip.evaluate("n => getComputedStyle(n).backgroundColor"))
    ack_site.apply(ack_bytes(NOTICE, "zhang", t, incident=INCIDENT))
    expect(row.locator(".chip.notice.unacked")).to_have_text("未阅 4")
    ack_site.apply(ack_bytes("test.zhang.x", "zhang", t))  # a test message is no incident's notice
    shot(page, "verify-03-board")
    expect(row.locator(".chip.notice.unacked")).to_have_text("未阅 4")
