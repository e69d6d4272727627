"""The 值班 pages (issue 18 "who is on duty") in a real browser (Debian's Chromium driven by Playwright),
against an app built from its own parts: a DutyBook holding 区应急办's roster (its record as the rosters
topic carries it) and a handover opened on the duty log, a simulated clock, an incident view fed the
lifecycle's own records, and a publisher that records what it sends. No broker.

The roster: 值班员 张伟 and 李娜 in turn from 08:30, 值班主任 孙主任 every day with one day stood by
欧阳主任 (代班), 带班领导 刘局长 daily until 11-27 08:30 and nobody after: a gap from then on."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import uvicorn
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel

from playbooks.duty.handover import changes, opening
from playbooks.lifecycle import start as start_incident
from playbooks.plan import load_plan
from services.clock import SimulatedClock
from services.duty.book import DutyBook, to_record
from services.privacy import Sealer
from services.settings import Settings
from services.users import new_token, user_record
from services.view import IncidentView
from services.web.app import create_app
from services.web.permissions import PERMISSIONS
from services.web.routes import duty_pages
from tests.playbooks.conftest import make_report
from topics.catalog import DUTY_LOG, INCIDENT_EVENTS, INCIDENTS_DECIDED, INCIDENTS_REPORTED, NOTIFICATIONS_REQUESTED
from topics.duty import DutyEvent, DutyEventKind, Override, Person, Roster, Rotation
from topics.models import IncidentDecided, IncidentReported, Role

SH = ZoneInfo("Asia/Shanghai")
OFFICE = "district_emergency_office"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=SH)  # a Wednesday; the week began Monday 11-23 08:30
ROTATION_START = datetime(2026, 11, 16, 8, 30, tzinfo=SH)
GAP_FROM = datetime(2026, 11, 27, 8, 30, tzinfo=SH)  # no 带班领导 from here on
INCIDENT = "gas-duty-1"
MOBILE_ZHANG, MOBILE_LI, MOBILE_BOSS = "13800000001", "13800000002", "13900000009"
PLAN = load_plan()
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"


def roster() -> Roster:
    def person(pid: str, name: str, post: str, *, leader: bool = False, mobile: str | None = None) -> Person:
        return Person(id=pid, name=name, unit_id=OFFICE, post=post, is_leader=leader, employment="regular",
                      contacts={"mobile": mobile} if mobile else {})

    people = [person("zhang", "张伟", "officer", mobile=MOBILE_ZHANG), person("li", "李娜", "officer", mobile=MOBILE_LI),
              person("chief1", "孙主任", "chief", leader=True), person("chief2", "欧阳主任", "chief", leader=True),
              person("boss1", "刘局长", "leader", leader=True, mobile=MOBILE_BOSS)]
    # UNTIL is inclusive: the last occurrence starts the day before the gap
    until = (GAP_FROM - timedelta(days=1)).astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    rotations = [
        Rotation(id="officers", unit_id=OFFICE, post="officer", rrule="FREQ=DAILY", dtstart=ROTATION_START, people=["zhang", "li"]),
        Rotation(id="chiefs", unit_id=OFFICE, post="chief", rrule="FREQ=DAILY", dtstart=ROTATION_START, people=["chief1"]),
        Rotation(id="leaders", unit_id=OFFICE, post="leader", rrule=f"FREQ=DAILY;UNTIL={until}",
                 dtstart=ROTATION_START, people=["boss1"]),
    ]
    overrides = [Override(id="o1", unit_id=OFFICE, post="chief", person_id="chief2", approved_by="boss1",
                          start=datetime(2026, 11, 26, 8, 30, tzinfo=SH), end=datetime(2026, 11, 27, 8, 30, tzinfo=SH),
                          reason="孙主任外出")]
    return Roster(people=people, rotations=rotations, overrides=overrides)


class RecordingPublisher:
    """The Publisher's `send`, acknowledged at once: every record kept, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, BaseModel]] = []

    async def send(self, topic: str, key: str, record: BaseModel, *, what: str) -> None:
        self.sent.append((topic, key, record))


def incident_view() -> IncidentView:
    """A 燃气事故 received at 09:30 today, as the worker decided it: 区应急办 is told of it (routing)."""
    report = make_report(report_id=INCIDENT, occurred_at="2026-11-25T09:20:00+08:00", received_at="2026-11-25T09:30:00+08:00")
    accepted = datetime(2026, 11, 25, 9, 31, tzinfo=SH)
    rec = IncidentReported(id=INCIDENT, incident_id=INCIDENT, report=report, accepted_at=accepted)
    out = start_incident(rec, PLAN, accepted)
    view = IncidentView()
    view.apply(INCIDENTS_REPORTED.name, rec.model_dump_json().encode())
    for d in out.decisions:
        decided = IncidentDecided(id=f"{INCIDENT}.decision.0", incident_id=INCIDENT, decision=d, accepted_at=accepted)
        view.apply(INCIDENTS_DECIDED.name, decided.model_dump_json().encode())
    for n in out.notifications:
        view.apply(NOTIFICATIONS_REQUESTED.name, n.model_dump_json().encode())
    for e in out.events:
        view.apply(INCIDENT_EVENTS.name, e.model_dump_json().encode())
    return view


@dataclass
class Site:
    url: str
    app: object
    book: DutyBook
    publisher: RecordingPublisher
    tokens: dict[Role, str]
    handover_id: str


def build_app(tmp_path, *, with_roster: bool = True):
    settings = Settings(data_dir=tmp_path, bootstrap_servers="127.0.0.1:1")
    sealer = Sealer.from_file(settings.key_file)
    book = DutyBook(sealer, PLAN.duty)
    handover_id = ""
    if with_roster:
        book.apply_roster(to_record(roster(), OFFICE, sealer, source="json", now=NOW - timedelta(days=10), by="test"))
        # the timer opened this morning's handover (08:30, 张伟 → 李娜 or the other way round)
        change = changes(book.roster(), OFFICE, NOW - timedelta(days=1), NOW)[-1]
        book.apply_event(opening(change, PLAN.unit_name(OFFICE), change.at + timedelta(minutes=1)))
        handover_id = change.handover_id
    book.caught_up.set()
    publisher = RecordingPublisher()
    app = create_app(settings, plan=PLAN, clock=SimulatedClock(start=NOW, speed=0.0), sealer=sealer,
                     view=incident_view(), duty=book, publisher=publisher)  # type: ignore[arg-type]
    tokens = {}
    for role in Role:
        tokens[role] = new_token()
        app.state.users.apply(user_record(f"d-{role.value}", role, tokens[role], now=NOW, by="test"))
    return app, book, publisher, tokens, handover_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def site(tmp_path) -> Iterator[Site]:
    """The app served by uvicorn in a thread, without its lifespan (no broker to connect to)."""
    app, book, publisher, tokens, handover_id = build_app(tmp_path)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield Site(f"http://127.0.0.1:{port}", app, book, publisher, tokens, handover_id)
    server.should_exit = True
    thread.join(timeout=10)


def sign_in(page, site: Site, role: Role, path: str) -> None:
    from playwright.sync_api import expect

    page.goto(site.url + path)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("访问令牌").fill(site.tokens[role])
    page.get_by_role("button", name="登录").click()
    expect(page).to_have_url(re.compile(re.escape(path) + "$"))


def shot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def red_dominant(css_colour: str) -> bool:
    r, g, b = (int(x) for x in re.findall(r"\d+", css_colour)[:3])
    return r > g + 25 and r > b + 25


# --- in the browser -------------------------------------------------------------------------------


def test_the_month_with_its_gaps_in_red_and_todays_leader_at_the_top(site, context):
    from playwright.sync_api import expect

    page = context.new_page()
    sign_in(page, site, Role.DUTY_OFFICER, f"/duty/{OFFICE}?weeks=5")
    expect(page.get_by_role("heading", name="区应急办 值班表")).to_be_visible()
    rows = page.locator("#duty-grid tbody tr")
    expect(rows).to_have_count(35)
    expect(rows.first).to_contain_text("11-23 周一")

    # today's 带班领导 on duty now, where it came from, and (for a duty officer) the mobile
    now = page.locator("#now")
    leader = now.locator('[data-post="leader"]')
    expect(leader).to_contain_text("带班领导")
    expect(leader).to_contain_text("刘局长")
    expect(leader).to_contain_text("轮班")
    expect(leader).to_contain_text(MOBILE_BOSS)
    expect(now.locator('[data-post="chief"]')).to_contain_text("孙主任")
    expect(now.locator('[data-post="officer"]')).to_contain_text(re.compile("张伟|李娜"))

    # today's row: the people of each post with their shift's times
    today = page.locator("#duty-grid tr.today")
    expect(today).to_have_count(1)
    expect(today).to_contain_text("11-25 周三")
    expect(today.locator('td[data-post="leader"]')).to_contain_text(re.compile(rf"刘局长\s+{MOBILE_BOSS}\s+08:30–次日08:30"))

    # the override (代班) is marked on its day
    override_day = page.locator('#duty-grid tr[data-day="2026-11-26"] td[data-post="chief"]')
    expect(override_day).to_contain_text("欧阳主任")
    expect(override_day.locator(".badge")).to_have_text("代班")

    # from 11-27 08:30 nobody leads: the 带班领导 cells are red with the rule's message
    gap = page.locator('#duty-grid tr[data-day="2026-11-27"] td[data-post="leader"]')
    expect(gap).to_have_class(re.compile(r"\bproblem\b"))
    expect(gap).to_contain_text("空岗")
    expect(gap).to_contain_text("nobody on 带班领导")
    assert red_dominant(gap.evaluate("el => getComputedStyle(el).backgroundColor"))
    shot(page, "duty-01-month")
    assert red_dominant(gap.locator(".cell-problem").first.evaluate("el => getComputedStyle(el).color"))
    ok_day = page.locator('#duty-grid tr[data-day="2026-11-25"] td[data-post="leader"]')
    expect(ok_day).not_to_have_class(re.compile(r"\bproblem\b"))
    # every day from the gap to the end of the month view, and none before
    bad_days = page.locator('#duty-grid td.problem[data-post="leader"]')
    expect(bad_days).to_have_count(35 - 4)

    # the problems list under the grid names the gap
    problems = page.locator("#problems")
    expect(problems.locator('li[data-rule="no_gap"]').first).to_contain_text("nobody on 带班领导 2026-11-27 08:30")
    # a duty officer sees the mobiles in the grid too
    expect(page.locator("#duty-grid").get_by_text(MOBILE_ZHANG).first).to_be_visible()

    # the links: previous/next week, the month, the duty log
    expect(page.get_by_role("link", name="值班记录")).to_have_attribute("href", re.compile(rf"/duty/{OFFICE}/log\?from=2026-11-23&to=2026-12-28"))
    page.get_by_role("link", name="‹ 上一周").click()
    expect(page).to_have_url(re.compile(r"from=2026-11-16&weeks=5"))
    expect(page.locator("#duty-grid tbody tr").first).to_contain_text("11-16 周一")
    page.get_by_role("link", name="本周").click()
    expect(page.locator("#duty-grid tbody tr")).to_have_count(7)
    expect(page.locator("#duty-grid tbody tr").first).to_contain_text("11-23 周一")
    page.get_by_role("link", name="本月").click()
    expect(page).to_have_url(re.compile(r"from=2026-11-01&weeks=5"))
    expect(page.locator("#duty-grid tbody tr").first).to_contain_text("11-01 周日")
    expect(page.locator("#duty-grid tbody tr")).to_have_count(35)


def test_the_navigation_and_the_unit_picker(site, context):
    from playwright.sync_api import expect

    page = context.new_page()
    sign_in(page, site, Role.VIEWER, "/board")
    page.locator(".nav").get_by_role("link", name="值班表").click()
    expect(page).to_have_url(re.compile(r"/duty$"))
    watch = page.get_by_role("region", name="区应急办当前值班")
    expect(watch.locator('[data-post="leader"]')).to_contain_text("刘局长")
    # units with a roster first, then every unit of the plan
    expect(page.locator(".units-list.kept li")).to_have_count(1)
    expect(page.locator(".units-list.all li")).to_have_count(len(PLAN.units))
    shot(page, "duty-00-picker")
    page.locator(".units-list.kept").get_by_role("link", name="区应急办").click()
    expect(page).to_have_url(re.compile(rf"/duty/{OFFICE}$"))
    expect(page.locator("#duty-grid tbody tr")).to_have_count(7)


def test_a_handover_is_confirmed_from_the_page(site, context):
    from playwright.sync_api import expect

    page = context.new_page()
    sign_in(page, site, Role.DUTY_OFFICER, f"/duty/{OFFICE}")
    page.evaluate("window.__loadedOnce = true")
    other = context.new_page()  # a second tab, open on the same page
    other.goto(f"{site.url}/duty/{OFFICE}")
    block = page.locator("#handover")
    expect(block.locator("#ho-status")).to_contain_text("待确认")
    expect(block).to_contain_text("2026-11-25 08:30")  # the change
    expect(block).to_contain_text("2026-11-25 08:45")  # confirm by (duty.yaml: 15 minutes)
    expect(block).to_contain_text(re.compile(r"(张伟 → 李娜|李娜 → 张伟)"))
    # the notice of this morning's incident to 区应急办, not acknowledged, is listed with a link
    expect(block.locator("#ho-items")).to_contain_text("未确认通知")
    expect(block.locator("#ho-items").get_by_role("link", name=INCIDENT).first).to_have_attribute("href", f"/incidents/{INCIDENT}/page")

    block.get_by_role("button", name="确认接班").click()
    expect(block.locator("#ho-status")).to_contain_text("已确认（d-duty_officer，2026-11-25 10:00）")
    expect(block.locator("#ho-ok")).to_have_text("已确认接班。")
    expect(block.get_by_role("button", name="确认接班")).to_have_count(0)
    assert page.evaluate("window.__loadedOnce") is True  # updated in place, not reloaded
    shot(page, "duty-02-handover-confirmed")

    # sent to the duty log topic, then applied to the book
    assert len(site.publisher.sent) == 1
    topic, key, record = site.publisher.sent[0]
    assert topic == DUTY_LOG.name and key == OFFICE
    assert isinstance(record, DutyEvent) and record.kind == DutyEventKind.HANDOVER_CONFIRMED
    assert record.handover_id == site.handover_id and record.by == "d-duty_officer"
    assert record in site.book.events

    # the other tab, loaded before, still offers the button: its confirmation is refused in words
    other.get_by_role("button", name="确认接班").click()
    expect(other.locator("#ho-error")).to_contain_text("该交接班已由 d-duty_officer 于 2026-11-25 10:00 确认")
    expect(other.locator("#ho-status")).to_contain_text("待确认")
    shot(other, "duty-03-handover-refused")
    fresh = context.new_page()
    fresh.goto(f"{site.url}/duty/{OFFICE}")
    expect(fresh.locator("#ho-status")).to_contain_text("已确认（d-duty_officer，2026-11-25 10:00）")
    expect(fresh.get_by_role("button", name="确认接班")).to_have_count(0)
    assert len(site.publisher.sent) == 1


def test_a_viewer_sees_no_confirm_button_and_no_mobile_numbers(site, context):
    from playwright.sync_api import expect

    page = context.new_page()
    sign_in(page, site, Role.VIEWER, f"/duty/{OFFICE}?weeks=5")
    expect(page.locator("#now [data-post=leader]")).to_contain_text("刘局长")
    expect(page.locator("#handover #ho-status")).to_contain_text("待确认")
    expect(page.get_by_role("button", name="确认接班")).to_have_count(0)
    html = page.content()
    for mobile in (MOBILE_ZHANG, MOBILE_LI, MOBILE_BOSS):
        assert mobile not in html
    expect(page.locator(".mobile")).to_have_count(0)
    shot(page, "duty-04-viewer")
    # the JSON the page would call answers the same: no contacts for a viewer
    resp = page.request.get(f"{site.url}/units/{OFFICE}/duty")
    assert resp.ok and all(p["person"] is None or p["person"]["contacts"] is None for p in resp.json()["posts"])


def test_the_log_page_lists_the_handover_and_the_incident(site, context):
    from playwright.sync_api import expect

    page = context.new_page()
    sign_in(page, site, Role.COMMANDER, f"/duty/{OFFICE}/log")
    expect(page.get_by_role("heading", name="区应急办 值班记录")).to_be_visible()
    shift = page.locator(".log-shift").filter(has=page.get_by_role("heading", name=re.compile(r"^2026-11-25 08:30 –")))
    expect(shift).to_have_count(1)
    lines = shift.locator("tbody tr")
    expect(lines.nth(0)).to_contain_text("交接班")
    expect(lines.nth(0)).to_contain_text(site.handover_id)
    expect(lines.nth(0)).to_contain_text(re.compile(r"区应急办 值班员 (张伟 → 李娜|李娜 → 张伟)"))
    incident = lines.filter(has_text="接报")
    expect(incident).to_have_count(1)
    expect(incident).to_contain_text("2026-11-25 09:30")
    link = incident.get_by_role("link", name=INCIDENT)
    expect(link).to_have_attribute("href", f"/incidents/{INCIDENT}/page")
    # in order: the handover (08:30) before the incident (09:30)
    assert lines.nth(0).locator("td").first.inner_text() < incident.locator("td").first.inner_text()

    shot(page, "duty-05-log")
    # the downloads are the JSON route's files
    xlsx = page.get_by_role("link", name="下载 .xlsx")
    csv = page.get_by_role("link", name="下载 .csv")
    expect(xlsx).to_have_attribute("href", re.compile(rf"^/units/{OFFICE}/duty-log\?.*format=xlsx"))
    resp = page.request.get(site.url + csv.get_attribute("href"))
    assert resp.ok and resp.headers["content-type"].startswith("text/csv")
    body = resp.text()
    assert INCIDENT in body and site.handover_id in body
    resp = page.request.get(site.url + xlsx.get_attribute("href"))
    assert resp.ok and resp.body()[:2] == b"PK"

    link.click()
    expect(page).to_have_url(re.compile(rf"/incidents/{INCIDENT}/page$"))


# --- plain HTTP: every page answers a signed-in user and sends the others to sign in ------------------

PAGES = ["/duty", f"/duty/{OFFICE}", f"/duty/{OFFICE}?weeks=5", f"/duty/{OFFICE}?from=2026-11-01&weeks=2",
         f"/duty/{OFFICE}/log", f"/duty/{OFFICE}/log?from=2026-11-23&to=2026-11-30"]
DUTY_PAGE_ROUTES = [r for r in duty_pages.router.routes if isinstance(r, APIRoute)]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app, _, _, tokens, _ = build_app(tmp_path_factory.mktemp("duty-pages"))
    return TestClient(app, follow_redirects=False), tokens  # no lifespan: no broker needed


@pytest.mark.parametrize("path", PAGES)
def test_each_page_answers_a_signed_in_user_and_sends_the_others_to_sign_in(client, path):
    c, tokens = client
    html = {"Accept": "text/html"}
    resp = c.get(path, headers=html)
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login?next=")
    assert c.get(path).status_code == 401
    for role in Role:
        resp = c.get(path, headers={**html, "Authorization": f"Bearer {tokens[role]}"})
        assert resp.status_code == 200, (path, role, resp.text[:300])
        assert resp.headers["content-type"].startswith("text/html")
        assert 'href="/duty"' in resp.text  # the navigation links the duty pages for every role


def test_every_duty_page_route_names_a_permission_every_role_has():
    for route in DUTY_PAGE_ROUTES:
        permission = next(d.call.permission for d in route.dependant.dependencies if getattr(d.call, "permission", None))
        assert PERMISSIONS[permission] == frozenset(Role), route.path


def test_an_unknown_unit_is_a_404_page(client):
    c, tokens = client
    for path in ("/duty/no_such_unit", "/duty/no_such_unit/log"):
        resp = c.get(path, headers={"Accept": "text/html", "Authorization": f"Bearer {tokens[Role.VIEWER]}"})
        assert resp.status_code == 404 and "未找到单位" in resp.text


def test_a_unit_without_a_roster_shows_every_post_empty(tmp_path):
    app, _, _, tokens, _ = build_app(tmp_path, with_roster=False)
    c = TestClient(app, follow_redirects=False)
    resp = c.get(f"/duty/{OFFICE}?weeks=1", headers={"Accept": "text/html", "Authorization": f"Bearer {tokens[Role.VIEWER]}"})
    assert resp.status_code == 200
    assert "本单位尚无值班表记录" in resp.text and "尚无交接班记录" in resp.text
    assert resp.text.count('<td class="problem"') == 7 * 2  # 值班员 and 带班领导 are required around the clock


def test_the_json_answers_are_those_the_pages_read(client):
    """The routes' bodies are shared functions now: their answers stay as they were."""
    c, tokens = client
    auth = {"Authorization": f"Bearer {tokens[Role.DUTY_OFFICER]}"}
    duty = c.get(f"/units/{OFFICE}/duty", headers=auth).json()
    assert [(p["post"], p["person"]["name"], p["source"]) for p in duty["posts"]][0] == ("leader", "刘局长", "rotation")
    assert duty["unit"] == "区应急办" and duty["roster_kept"] is True
    roster = c.get(f"/units/{OFFICE}/roster", headers=auth).json()
    assert roster["start"].startswith("2026-11-23T08:30:00+08:00") and len(roster["shifts"]) > 0
    assert any(p["rule"] == "no_gap" and set(p) == {"rule", "message", "row", "column", "field"} for p in roster["problems"])
    hos = c.get(f"/units/{OFFICE}/handovers", headers=auth).json()
    assert len(hos) == 1 and hos[0]["confirmed_at"] is None
    log = c.get(f"/units/{OFFICE}/duty-log", headers=auth).json()
    assert {line["kind"] for line in log["lines"]} >= {"handover_opened", "received"}
