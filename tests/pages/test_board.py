"""The pages in a real browser (Debian's Chromium driven by Playwright) against `yingji run`: a duty
officer signs in, raises an incident through the form, watches it arrive on the board with its
countdowns, files the phone report, and sees a breach land in the feed — all on one board page that
never reloads. Screenshots of every step go to screenshots/ (git-ignored).

The first tests need no broker: the page routes' sign-in and role rules, on the app in-process."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from services.web.app import create_app
from services.web.permissions import PERMISSIONS
from services.web.routes import board, duty_pages, pages, signin
from services.settings import Settings
from services.users import new_token, user_record
from tests.waiting import eventually
from tests.conftest import unique_id
from topics.models import Role

SHOTS = Path(__file__).resolve().parents[2] / "screenshots"
BEIJING = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 25, tzinfo=timezone.utc)


# --- sign-in and roles, in-process ---------------------------------------------------------------


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("pages"), bootstrap_servers="127.0.0.1:1"))
    tokens = {}
    for role in Role:
        tokens[role] = new_token()
        app.state.users.apply(user_record(f"p-{role.value}", role, tokens[role], now=NOW, by="test"))
    return TestClient(app, follow_redirects=False), tokens  # no lifespan: no broker needed


PUBLIC_PAGES = {"/login", "/logout"}
# the board's data, which its script fetches: an API's 401 without a sign-in, never a redirect to /login
BOARD_DATA = {"/board/stream", "/board/map.json"}
PAGE_ROUTES = [r for router in (pages.router, signin.router, board.router, duty_pages.router) for r in router.routes if isinstance(r, APIRoute)]


def permission_of(route: APIRoute) -> str | None:
    return next((d.call.permission for d in route.dependant.dependencies if getattr(d.call, "permission", None)), None)


def test_every_page_route_is_public_or_names_a_permission():
    unprotected = [r.path for r in PAGE_ROUTES if r.path not in PUBLIC_PAGES and permission_of(r) is None]
    assert unprotected == []


@pytest.mark.parametrize("route", [r for r in PAGE_ROUTES if r.path not in PUBLIC_PAGES], ids=lambda r: r.path)
def test_page_route_by_role(app_client, route):
    client, tokens = app_client
    url = route.path.replace("{incident_id}", "inc-1").replace("{unit_id}", "district_emergency_office")
    html = {"Accept": "text/html"}
    # a browser without a sign-in goes to /login and comes back; an API client gets 401
    if route.path not in BOARD_DATA:
        resp = client.get(url, headers=html)
        assert resp.status_code == 303 and resp.headers["location"].startswith("/login?next=")
    assert client.get(url).status_code == 401
    for role in Role:
        resp = client.get(url, headers={**html, "Authorization": f"Bearer {tokens[role]}"})
        if role in PERMISSIONS[permission_of(route)]:
            assert resp.status_code not in (401, 403), (url, role)
        else:
            assert resp.status_code == 403 and "无权访问" in resp.text, (url, role)


def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_clears_it(app_client):
    client, tokens = app_client
    resp = client.post("/login", content=f"token={tokens[Role.VIEWER]}&next=/board",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 303 and resp.headers["location"] == "/board"
    cookie = resp.headers["set-cookie"]
    assert "yingji_token=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    out = client.get("/logout")
    assert out.status_code == 303 and 'yingji_token=""' in out.headers["set-cookie"]
    client.cookies.clear()


def test_wrong_token_shows_the_form_again_in_chinese_and_next_stays_on_this_site(app_client):
    client, tokens = app_client
    resp = client.post("/login", content="token=nope&next=/board", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 401 and "令牌无效" in resp.text and "set-cookie" not in resp.headers
    resp = client.post("/login", content=f"token={tokens[Role.VIEWER]}&next=//evil.example/x",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.headers["location"] == "/board"
    resp = client.post("/login", content=f"token={tokens[Role.VIEWER]}&next=/board%0d%0aX-Evil:%201",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.headers["location"] == "/board" and "x-evil" not in resp.headers
    client.cookies.clear()


def test_the_event_stream_only_answers_clients_that_ask_for_one(app_client):
    client, tokens = app_client
    resp = client.get("/board/stream", headers={"Authorization": f"Bearer {tokens[Role.VIEWER]}"})
    assert resp.status_code == 406


# --- in the browser, on the running service --------------------------------------------------------


def shot(page, name: str, *, full_page: bool = False) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def sign_in(page, service, role: str, path: str = "/board") -> None:
    from playwright.sync_api import expect

    page.goto(service.api + path)
    expect(page).to_have_url(re.compile(r"/login\?next="))  # not signed in: the sign-in page, then back
    page.get_by_label("访问令牌").fill(service.tokens[role])
    page.get_by_role("button", name="登录").click()
    expect(page).to_have_url(re.compile(re.escape(path) + "$"))


def beijing_input(t: datetime) -> str:
    return t.astimezone(BEIJING).strftime("%Y-%m-%dT%H:%M:%S")


def watch_navigations(page) -> list[str]:
    """Every navigation of the page's main frame from now on."""
    seen: list[str] = []
    page.on("framenavigated", lambda frame: seen.append(frame.url) if frame == page.main_frame else None)
    page.evaluate("window.__e2eMarker = 'board-loaded-once'")
    return seen


def assert_never_reloaded(page, navigations: list[str]) -> None:
    # the board writes its view into the URL (history.replaceState: same document, marker kept); a reload
    # or a navigation elsewhere would have lost the marker
    assert all(urlsplit(url).path == "/board" for url in navigations), navigations
    assert page.evaluate("window.__e2eMarker") == "board-loaded-once"


def red_dominant(css_colour: str) -> bool:
    """'' (the element replaced by a redraw as it was read) is not red: read again."""
    found = re.findall(r"\d+", css_colour)[:3]
    if len(found) < 3:
        return False
    r, g, b = (int(x) for x in found)
    return r > g + 25 and r > b + 25


@pytest.mark.e2e
def test_raise_through_the_form_then_watch_it_live_on_the_board(service, context):
    from playwright.sync_api import expect

    board = context.new_page()
    sign_in(board, service, "duty_officer")
    expect(board.get_by_text("实时", exact=True)).to_be_visible(timeout=5000)
    navigations = watch_navigations(board)
    shot(board, "01-board-signed-in")

    # the duty officer raises an incident through the form, in a second tab
    form = context.new_page()
    form.goto(service.api + "/raise")
    street = "于家务回族乡"
    now = datetime.now(timezone.utc)
    form.get_by_label("事件类型 *").select_option("gas_accident")
    form.get_by_label("事发时间 *").fill(beijing_input(now - timedelta(minutes=4)))
    form.get_by_label("接报时间 *").fill(beijing_input(now))
    form.get_by_label("属地街道乡镇").select_option(street)
    form.get_by_label("受伤（人）").fill("2")
    form.get_by_label("姓名").fill("王小明")
    form.get_by_label("电话").fill("13912345678")
    form.get_by_label("事件简况").fill("小区燃气管道泄漏，两人轻伤")
    shot(form, "02-raise-form-filled", full_page=True)
    submitted = time.monotonic()
    form.get_by_role("button", name="提交接报").click()
    ok = form.locator("#form-ok")
    expect(ok).to_contain_text("已受理", timeout=10_000)
    incident = re.search(r"事件编号 (\S+?)。", ok.inner_text()).group(1)
    shot(form, "03-raise-accepted")

    # it is on the board within 2 s, with a countdown per pending report, ticking; found by its id in the
    # search box (the board draws only the rows in view, and this session's board holds other tests' too)
    board.locator("#q").fill(incident)
    row = board.locator("#rows tr", has_text=incident)
    expect(row).to_be_visible(timeout=2000)
    on_board_s = time.monotonic() - submitted
    expect(row).to_contain_text("燃气事故")
    expect(row).to_contain_text(street)
    phone = row.locator(".chip", has_text="电话报告")
    expect(phone).to_contain_text(re.compile(r"剩 \d\d:\d\d"), timeout=3000)
    for label in ("书面报告", "详细信息报告"):
        expect(row.locator(".chip", has_text=label)).to_contain_text("剩 ")
    expect(row).to_contain_text(re.compile(r"(一|二|三)级响应"))
    first = phone.inner_text()
    # it ticks each second; waiting up to 5 s keeps a loaded machine from failing a working page
    expect(phone).not_to_have_text(first, timeout=5000)
    assert "王小明" not in board.content() and "13912345678" not in board.content()  # personal data stays off
    shot(board, "04-board-incident-arrived")

    # clicking the row opens its decision, reasons with plan sections, and timeline
    row.click()
    drawer = board.locator("#drawer")
    expect(drawer).to_be_visible()
    expect(drawer).to_contain_text("依据")
    expect(drawer).to_contain_text("2.3.6")
    expect(drawer).to_contain_text("时间线")
    expect(drawer).to_contain_text("接报")
    shot(board, "05-board-detail")
    board.get_by_role("button", name="关闭").click()
    expect(drawer).to_be_hidden()

    # the phone report, filed from the incident's page, resolves that countdown on the board
    form.goto(f"{service.api}/incidents/{incident}/page")
    form.get_by_role("button", name="报送电话报告").click()
    form.get_by_role("button", name="提交报送").click()
    expect(form.locator("#action-ok")).to_contain_text("已提交", timeout=10_000)
    expect(phone).to_contain_text("已报", timeout=3000)
    expect(phone).not_to_contain_text("剩")
    expect(form.locator("#detail")).to_contain_text("已按时报送", timeout=5000)
    shot(form, "06-incident-page-after-phone-report", full_page=True)
    shot(board, "07-board-phone-report-met")

    # a report received 9 min 55 s ago: its phone report falls due in 5 s, and nobody files it
    late_street = "漷县镇"
    received = datetime.now(timezone.utc) - timedelta(minutes=9, seconds=55)
    with service.client("duty_officer") as api:
        resp = api.post("/incidents", json={"report_id": unique_id("board-late"), "type": "forest_fire",
                                            "occurred_at": received.isoformat(), "received_at": received.isoformat(),
                                            "location": {"street": late_street}})
        assert resp.status_code == 202, resp.text
        late = resp.json()["incident_id"]
    board.locator("#q").fill(late)
    late_row = board.locator("#rows tr", has_text=late)
    expect(late_row).to_be_visible(timeout=2000)
    expect(late_row.locator(".chip", has_text="电话报告")).to_contain_text(re.compile(r"剩 00:0\d"))
    shot(board, "08-board-about-to-breach")
    feed_item = board.locator("#feed li", has_text="超时未报").filter(has_text=late_street).filter(has_text="森林火灾")
    expect(feed_item.first).to_be_visible(timeout=15_000)
    expect(late_row.locator(".chip", has_text="电话报告")).to_contain_text("超时未报")
    expect(board.locator("#feed li", has_text="逐级上报").filter(has_text=late_street).first).to_be_visible(timeout=5000)
    # the row can be redrawn between finding and reading it (a detached node has no computed style): read again
    eventually(lambda: late_row.evaluate("el => getComputedStyle(el).backgroundColor"), until=red_dominant,
               timeout=5, every=0.2, what="the breached row drawn red")
    assert int(board.locator("#sum-breach").inner_text()) >= 1
    # with the search cleared, overdue rows (this one among them) come first on the whole board
    board.locator("#q").fill("")
    expect(board.locator("#rows tr.inc").first).to_contain_text("超时未报")
    shot(board, "09-board-breach")

    assert_never_reloaded(board, navigations)
    print(f"\nraise → on the board: {on_board_s:.2f} s")
    (SHOTS / "timings.txt").write_text(f"raise (form submit) → row on the board: {on_board_s:.3f} s\n")


@pytest.mark.e2e
def test_validation_messages_are_in_chinese_next_to_their_field(service, context):
    from playwright.sync_api import expect

    page = context.new_page()
    sign_in(page, service, "duty_officer", "/raise")
    page.get_by_label("事件类型 *").select_option("flood")
    page.get_by_label("死亡（人）").fill("-1")
    page.get_by_role("button", name="提交接报").click()
    occurred_error = page.locator('[data-err-for="occurred_at"]')
    expect(occurred_error).to_have_text("必填")
    expect(page.locator('[data-err-for="facts.deaths"]')).to_have_text("不能小于 0")
    expect(page.locator("#form-error")).to_contain_text("请更正")
    expect(page.locator("#form-ok")).to_be_hidden()
    shot(page, "10-raise-validation", full_page=True)

    # received before it occurred: the message sits next to 接报时间
    now = datetime.now(timezone.utc)
    page.get_by_label("死亡（人）").fill("")
    page.get_by_label("事发时间 *").fill(beijing_input(now))
    page.get_by_label("接报时间 *").fill(beijing_input(now - timedelta(hours=1)))
    page.get_by_role("button", name="提交接报").click()
    expect(page.locator('[data-err-for="received_at"]')).to_have_text("接报时间不能早于事发时间")
    expect(occurred_error).to_have_text("")
    shot(page, "11-raise-validation-order")


@pytest.mark.e2e
def test_a_viewer_watches_the_board_but_gets_no_raise_form(service, context):
    from playwright.sync_api import expect

    page = context.new_page()
    sign_in(page, service, "viewer")
    expect(page.get_by_text("实时", exact=True)).to_be_visible(timeout=5000)
    expect(page.get_by_role("link", name="接报登记")).to_have_count(0)
    resp = page.goto(service.api + "/raise")
    assert resp.status == 403
    expect(page.get_by_role("heading", name="无权访问")).to_be_visible()
    shot(page, "12-viewer-no-raise-form")


@pytest.mark.e2e
def test_drills_are_marked_and_filtered_never_mixed_in_silently(service, context, browser):
    """A drill incident as the drill runner sends it (report.drill = true on the reported topic)."""
    from kafka import KafkaProducer
    from playwright.sync_api import expect

    from topics.catalog import INCIDENTS_REPORTED
    from topics.models import IncidentReported, ReportFacts

    now = datetime.now(timezone.utc)
    drill_id = unique_id("drill-board")
    record = IncidentReported(
        id=drill_id, incident_id=drill_id, accepted_at=now, raised_by="e2e-drill",
        report=ReportFacts(report_id=drill_id, type="flood", occurred_at=now, received_at=now,
                           location={"street": "宋庄镇"}, drill=True))
    producer = KafkaProducer(bootstrap_servers=service.bootstrap, acks="all")
    producer.send(INCIDENTS_REPORTED.name, key=drill_id.encode(), value=record.model_dump_json().encode()).get(timeout=10)
    producer.close()
    with service.client("duty_officer") as api:
        live = api.post("/incidents", json={"report_id": unique_id("board-live"), "type": "flood",
                                            "occurred_at": now.isoformat(), "received_at": now.isoformat(),
                                            "location": {"street": "宋庄镇"}}).json()["incident_id"]

    page = context.new_page()
    sign_in(page, service, "viewer")
    page.locator("#q").fill("board")  # this test's two rows (and few others): the board draws only the rows in view
    drill_row = page.locator("#rows tr", has_text=drill_id)
    live_row = page.locator("#rows tr", has_text=live)
    # default view: 实战 only, and a banner says drills are running and hidden
    expect(live_row).to_be_visible(timeout=5000)
    expect(drill_row).to_be_hidden()
    banner = page.locator("#drill-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("演练事件")
    expect(banner).to_contain_text("当前视图未显示演练事件")
    shot(page, "13-board-live-view-with-drill-banner")

    page.get_by_role("button", name=re.compile(r"^演练 \d+")).click()
    expect(drill_row).to_be_visible()
    expect(drill_row.locator(".badge.drill")).to_have_text("演练")
    expect(drill_row.locator(".chip", has_text="电话报告")).to_contain_text("剩 ", timeout=5000)
    expect(live_row).to_be_hidden()
    shot(page, "14-board-drill-view")

    page.get_by_role("button", name=re.compile(r"^全部 \d+")).click()
    expect(drill_row).to_be_visible()
    expect(live_row).to_be_visible()
    shot(page, "15-board-all-view")

    # a duty officer files on a live incident's page; a drill's incident says its scenario files
    officer_context = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai")
    officer = officer_context.new_page()
    sign_in(officer, service, "duty_officer", f"/incidents/{live}/page")
    expect(officer.locator("[data-action=phone_report]")).to_be_visible(timeout=5000)
    officer.goto(service.api + f"/incidents/{drill_id}/page")
    expect(officer.locator("[data-role=drill-note]")).to_be_visible(timeout=5000)
    expect(officer.locator("[data-action=phone_report]")).to_have_count(0)
    expect(officer.locator("[data-action=followup]")).to_have_count(0)
    # a 较大 incident owes the city report, which waits for 区应急委's approval (4.1.3): the page says so
    with service.client("duty_officer") as api:
        large = api.post("/incidents", json={"report_id": unique_id("board-large"), "type": "gas_accident",
                                             "occurred_at": now.isoformat(), "received_at": now.isoformat(),
                                             "location": {"street": "宋庄镇"}, "facts": {"deaths": 3}}).json()["incident_id"]
    officer.goto(service.api + f"/incidents/{large}/page")
    expect(officer.locator("[data-action=city_report]")).to_contain_text("须先经区应急委批准", timeout=5000)
    officer_context.close()


@pytest.mark.e2e
def test_a_running_drill_shows_on_its_simulated_clock_for_the_drill_controller(service, context):
    from playwright.sync_api import expect

    scenario = (Path(__file__).resolve().parents[2] / "playbooks" / "drill" / "scenarios" / "gas-explosion.yaml").read_text(encoding="utf-8")
    with service.client("drill_controller") as api:
        resp = api.post("/drills", json={"scenario": scenario, "speed": 600})
    assert resp.status_code == 202, resp.text
    run = resp.json()["run_id"]

    page = context.new_page()
    sign_in(page, service, "drill_controller")
    # a drill controller starts on the drills, and the banner names the drill, its speed and its clock
    expect(page.get_by_role("button", name=re.compile(r"^演练 \d+"))).to_have_attribute("aria-pressed", "true")
    banner = page.locator("#drill-banner")
    expect(banner).to_contain_text("梨园镇餐馆燃气爆炸", timeout=5000)
    expect(banner).to_contain_text("600倍速")
    expect(banner).to_contain_text("模拟时间 2026-11-22")
    page.locator("#q").fill(run)
    row = page.locator("#rows tr", has_text=f"{run}.gas-explosion.blast")
    expect(row).to_be_visible(timeout=5000)
    expect(row.locator(".badge.drill")).to_have_text("演练")
    first = banner.inner_text()
    expect(banner).not_to_have_text(first, timeout=5000)  # the simulated clock advances
    # its phone report is never filed: on the drill's clock the breach comes within seconds
    expect(row.locator(".chip", has_text="电话报告")).to_contain_text("超时未报", timeout=10_000)
    shot(page, "16-board-drill-running")
