"""Who is on duty, end to end on the local Kafka (issue 18): a 30-day 值班表.xlsx for three units (built
here, with its 人员 sheet) imported through the API; who is on duty asked at shift boundaries; a report
posted, and every notice and 督办 step names the person on duty for its post at its own time; the
worker and the API restarted, and the same answers. A bad 值班表 is refused naming row and column,
through the API (422) and the terminal (exit 2), and nothing of it is kept."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time as time_module
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import httpx
import openpyxl
import pytest

from services.local.stack import stop_group
from services.users import new_token, publish_user, user_record
from tests.conftest import read_all, read_records, unique_id
from tests.waiting import eventually
from topics.catalog import DUTY_LOG, DUTY_ROSTERS, NOTIFICATIONS_REQUESTED
from topics.models import Role

pytestmark = pytest.mark.e2e
SH = ZoneInfo("Asia/Shanghai")
CHANGE = time(8, 30)
OFFICE, URBAN, POLICE = "district_emergency_office", "district_urban_management_commission", "tongzhou_police"
UNITS = {OFFICE: "区应急办", URBAN: "区城市管理委", POLICE: "通州公安分局"}
# per unit: 值班员 in turn by day, 值班主任 in turn by day, 带班领导 by week
STAFF = {
    OFFICE: {"officer": ["yjb-zhang", "yjb-li"], "chief": ["yjb-sun", "yjb-zhou"], "leader": ["yjb-liu", "yjb-chen"]},
    URBAN: {"officer": ["cg-wang", "cg-zhao", "cg-qian"], "chief": ["cg-wu"], "leader": ["cg-zheng"]},
    POLICE: {"officer": ["ga-feng", "ga-he"], "chief": ["ga-lv"], "leader": ["ga-shi"]},
}
NAMES = {"yjb-zhang": "张伟", "yjb-li": "李娜", "yjb-sun": "孙主任", "yjb-zhou": "周主任", "yjb-liu": "刘局长",
         "yjb-chen": "陈副局长", "cg-wang": "王强", "cg-zhao": "赵敏", "cg-qian": "钱进", "cg-wu": "吴主任",
         "cg-zheng": "郑局长", "ga-feng": "冯警官", "ga-he": "何警官", "ga-lv": "吕主任", "ga-shi": "施局长"}
POST_NAMES = {"officer": "值班员", "chief": "值班主任", "leader": "带班领导"}


def away_from_the_change() -> None:
    """The test takes about a minute and reads the table's days from the clock at its start: begun in
    the three minutes before an 08:30 change, it waits for the change to pass, so that no shift it
    names ends (or handover opens) while it runs. Only the clock decides this wait."""
    local = datetime.now(SH)
    change = datetime.combine(local.date(), CHANGE, SH)
    if change - timedelta(minutes=3) <= local < change + timedelta(minutes=1):
        time_module.sleep((change + timedelta(minutes=1) - local).total_seconds())


def first_day() -> date:
    """The day whose 08:30 shift is in force now (Asia/Shanghai), minus one: the table starts yesterday."""
    local = datetime.now(SH)
    today = local.date() if local.time() >= CHANGE else local.date() - timedelta(days=1)
    return today - timedelta(days=1)


def expected(unit: str, post: str, at: datetime, start: date) -> str:
    """Who the table says stands `post` of `unit` at `at`."""
    local = at.astimezone(SH)
    day = local.date() if local.time() >= CHANGE else local.date() - timedelta(days=1)
    k = (day - start).days
    people = STAFF[unit][post]
    return people[(k // 7 if post == "leader" else k) % len(people)]


def workbook(start: date, days: int = 33, *, bad: bool = False) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "人员"
    ws.append(["编号", "姓名", "单位", "岗位", "领导干部", "用工", "手机", "邮箱"])
    for i, (unit, posts) in enumerate(STAFF.items()):
        for post, ids in posts.items():
            for j, pid in enumerate(ids):
                ws.append([pid, NAMES[pid], UNITS[unit], POST_NAMES[post], "是" if post != "officer" else "否", "正式",
                           f"139{i}{j}{len(pid):02d}{ord(pid[-1]):04d}"[:11], f"{pid}@tz.example.cn"])
    if bad:
        ws.append(["ls-temp", "林临时", "区应急办", "值班员", "否", "临时", "13900000009", ""])
        ws.append(["yjb-clerk", "郑科员", "区应急办", "带班领导", "否", "正式", "13900000010", ""])
    table = wb.create_sheet("值班表")
    table.append(["日期", "班次", "单位", "带班领导", "值班主任", "值班员", "电话"])
    for k in range(days):
        day = start + timedelta(days=k)
        for unit in STAFF:
            row = [day.isoformat(), "08:30-次日08:30", UNITS[unit],
                   *(NAMES[STAFF[unit][p][(k // 7 if p == "leader" else k) % len(STAFF[unit][p])]]
                     for p in ("leader", "chief", "officer")), ""]
            table.append(row)
    if bad:
        table.cell(row=11, column=4).value = None  # row 11 (区应急办, the fourth day): no 带班领导
        table.cell(row=3, column=3).value = "不存在的单位"  # row 3: an unknown unit
        table.cell(row=5, column=6).value = "林临时"  # row 5 (区应急办): a 非正式 person on duty
        table.cell(row=8, column=4).value = "郑科员"  # row 8 (区应急办): a 带班 who is not a leader
        table.cell(row=6, column=7).value = "1390000"  # row 6: a bad mobile number
        # the third day's 通州公安分局 值班员 (冯警官) also on a 区城市管理委 night shift: in two places at once
        table.append([(start + timedelta(days=2)).isoformat(), "20:00-次日08:30", "区城市管理委", "郑局长", "吴主任",
                      NAMES[STAFF[POLICE]["officer"][2 % 2]], ""])  # 冯警官: on 通州公安分局's shift that day too
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def upload(client: httpx.Client, data: bytes, name: str = "值班表.xlsx") -> httpx.Response:
    return client.post("/rosters", files={"file": (name, data, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")})


def boundaries(start: date) -> list[datetime]:
    """Either side of three shift changes, and the middle of a night."""
    out = []
    for k in (1, 2, 9):
        change = datetime.combine(start + timedelta(days=k), CHANGE, SH)
        out += [change - timedelta(seconds=1), change, change + timedelta(hours=15)]
    return out


def duty_answers(client: httpx.Client, start: date) -> dict:
    answers = {}
    for unit in STAFF:
        for at in boundaries(start):
            resp = client.get(f"/units/{unit}/duty", params={"at": at.isoformat()})
            assert resp.status_code == 200, resp.text
            answers[(unit, at)] = {p["post"]: (p["person"] or {}).get("id") for p in resp.json()["posts"]}
    return answers


def post_overdue_report(client: httpx.Client) -> str:
    """A 燃气事故 received 11 minutes ago: its 10-minute phone report is overdue at once, so the first
    督办 step (区城市管理委 值班领导, 区应急办 值班主任) and the second (分管区领导) follow."""
    now = datetime.now(timezone.utc)
    body = {"report_id": unique_id("duty"), "type": "燃气事故", "occurred_at": (now - timedelta(minutes=30)).isoformat(),
            "received_at": (now - timedelta(minutes=11)).isoformat(), "facts": {"deaths": 1}}
    resp = client.post("/incidents", json=body)
    assert resp.status_code == 202, resp.text
    return resp.json()["incident_id"]


def check_notices(bootstrap: str, incident_id: str, start: date) -> list[dict]:
    """Every notice of the incident names the person the table says, for its role's post at requested_at."""
    def notices() -> list[dict]:
        return [n for n in read_all(bootstrap, NOTIFICATIONS_REQUESTED.name, settle_s=0) if n["incident_id"] == incident_id]

    found = eventually(notices, until=lambda ns: {n["kind"] for n in ns} >= {"routing", "escalation"}, timeout=90,
                       every=0.5, what="routing notices and a 督办 step")
    role_post = {None: "officer", "值班员": "officer", "值班领导": "chief", "值班主任": "chief"}
    for n in found:
        ref = n["on_duty"]
        at = datetime.fromisoformat(ref["at"])
        assert at == datetime.fromisoformat(n["requested_at"]), n
        if n["role"] == "分管区领导":  # 区政府's 带班领导: no roster of it here, so 区应急办's 值班主任 answers
            assert (ref["unit_id"], ref["post"], ref["source"]) == (OFFICE, "chief", "fallback"), n
            assert ref["person_id"] == expected(OFFICE, "chief", at, start), n
            continue
        post = role_post[n["role"]]
        if n["unit_id"] in STAFF:
            assert (ref["unit_id"], ref["post"], ref["source"]) == (n["unit_id"], post, "table"), n
            assert ref["person_id"] == expected(n["unit_id"], post, at, start), n
        else:  # a unit with no roster: down the chain to 区应急办's 值班主任, and the notice says so
            assert (ref["unit_id"], ref["post"], ref["source"]) == (OFFICE, "chief", "fallback"), n
            assert ref["person_id"] == expected(OFFICE, "chief", at, start), n
    assert {n["unit_id"] for n in found} >= {OFFICE, URBAN, POLICE}
    return found


def cli(stack, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "YINGJI_BOOTSTRAP_SERVERS": stack.settings.bootstrap, "YINGJI_DATA_DIR": str(stack.settings.data_dir)}
    return subprocess.run([sys.executable, "-m", "services.cli", "duty", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def in_the_browser(stack, start: date) -> None:
    """Chromium on the live API: the month of 区应急办 with today's 带班领导 on top, and its handover
    confirmed from the page (recorded on the duty log topic)."""
    from playwright.sync_api import expect, sync_playwright

    from tests.pages.conftest import CHROMIUM_ARGS

    api = stack.settings.api_url
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai").new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{api}/login?next=/duty/{OFFICE}%3Fweeks%3D5")
        page.get_by_label("访问令牌").fill(stack.token)
        page.get_by_role("button", name="登录").click()
        expect(page.locator("#duty-grid tbody tr")).to_have_count(35)
        leader_now = expected(OFFICE, "leader", datetime.now(SH), start)
        expect(page.locator('#now [data-post="leader"]')).to_contain_text(NAMES[leader_now])
        expect(page.locator('#now [data-post="leader"]')).to_contain_text("值班表")
        page.get_by_role("button", name="确认接班").click()
        expect(page.get_by_text("已确认接班。")).to_be_visible()
        browser.close()
    assert errors == []
    confirmed = eventually(lambda: [e for e in read_all(stack.settings.bootstrap, DUTY_LOG.name, settle_s=0)
                                    if e["kind"] == "handover_confirmed" and e["unit_id"] == OFFICE],
                           timeout=30, every=0.5, what="the page's confirmation on the duty log")
    assert len(confirmed) == 1 and confirmed[0]["by"] == "stack-officer"


def test_a_month_of_duty_for_three_units_names_the_person_on_every_notice_and_survives_restarts(stack, tmp_path):
    away_from_the_change()
    token = new_token()
    publish_user(stack.settings.bootstrap, user_record("duty-admin", Role.ADMIN, token, now=datetime.now(timezone.utc), by="test"))
    api = stack.settings.api_url
    admin = httpx.Client(base_url=api, timeout=30, headers={"Authorization": f"Bearer {token}"})
    officer = httpx.Client(base_url=api, timeout=30, headers={"Authorization": f"Bearer {stack.token}"})
    eventually(lambda: admin.get(f"/units/{OFFICE}/duty").status_code, until=lambda c: c == 200, timeout=30,
               every=0.3, what="the admin known to the API")
    start = first_day()

    # bad input first: refused whole, every problem named by row and column, nothing kept
    bad = workbook(start, bad=True)
    resp = upload(admin, bad)
    assert resp.status_code == 422, resp.text
    fields = resp.json()["fields"]
    named = {(f["row"], f["column"]) for f in fields}
    for cell in ((3, "单位"), (6, "电话")):
        assert cell in named, fields
    assert read_all(stack.settings.bootstrap, DUTY_ROSTERS.name) == []
    (tmp_path / "bad.xlsx").write_bytes(bad)
    refused = cli(stack, "import", str(tmp_path / "bad.xlsx"))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "row 3, column 单位" in refused.stderr and "row 6, column 电话" in refused.stderr
    # the input problems come first; with them fixed the rules' problems show (missing 带班领导, 非正式, non-leader)
    fixed = openpyxl.load_workbook(io.BytesIO(bad))
    fixed["值班表"].cell(row=3, column=3).value = UNITS[URBAN]
    fixed["值班表"].cell(row=6, column=7).value = None
    buf = io.BytesIO()
    fixed.save(buf)
    resp = upload(admin, buf.getvalue())
    assert resp.status_code == 422, resp.text
    rules = {(f["row"], f["column"], f["rule"]) for f in resp.json()["fields"]}
    assert (11, "带班领导", "leader_on_watch") in rules, rules
    assert (5, "值班员", "no_informal") in rules, rules
    assert (8, "带班领导", "leader_on_watch") in rules, rules
    assert any(r == "one_place_at_a_time" for _, _, r in rules), rules
    assert read_all(stack.settings.bootstrap, DUTY_ROSTERS.name) == []

    # the month, kept
    resp = upload(admin, workbook(start))
    assert resp.status_code == 201, resp.text
    assert sorted(resp.json()["units"]) == sorted(STAFF) and resp.json()["shifts"] == 33 * 3 * 3
    before = duty_answers(officer, start)
    for (unit, at), posts in before.items():
        for post, person in posts.items():
            assert person == expected(unit, post, at, start), (unit, at, post)
    # the leader worker opens each unit's latest 交接班; left unconfirmed 15 minutes after its change it
    # goes to the unit's 带班领导 (the change was hours ago: at once)
    def handover_log() -> list[dict]:
        return [e for e in read_all(stack.settings.bootstrap, DUTY_LOG.name, settle_s=0) if e.get("handover_id")]

    latest_change = datetime.combine(start + timedelta(days=1), CHANGE, SH)
    # within 15 minutes of the change (08:30-08:45) the handovers are open but not yet due to escalate
    escalates = datetime.now(SH) >= latest_change + timedelta(minutes=15)
    kinds = ("handover_opened", "handover_escalated") if escalates else ("handover_opened",)
    logged = eventually(handover_log, until=lambda es: {(e["unit_id"], e["kind"]) for e in es} >= {
        (u, k) for u in STAFF for k in kinds}, timeout=90, every=1,
        what="a handover opened (and escalated, when due) for each unit")
    for e in (e for e in logged if e["kind"] == "handover_opened"):
        assert datetime.fromisoformat(e["at"]) == latest_change, e
        assert e["incoming_id"] == expected(e["unit_id"], "officer", latest_change, start), e
        assert e["outgoing_id"] == expected(e["unit_id"], "officer", latest_change - timedelta(seconds=1), start), e
    to_leaders = [n for n in read_all(stack.settings.bootstrap, NOTIFICATIONS_REQUESTED.name) if n["kind"] == "handover"]
    for n in to_leaders:
        at = datetime.fromisoformat(n["requested_at"])
        assert at == latest_change + timedelta(minutes=15), n
        assert n["on_duty"]["person_id"] == expected(n["unit_id"], "leader", at, start), n
    if escalates:
        assert {n["unit_id"] for n in to_leaders} == set(STAFF)
    [handover] = officer.get(f"/units/{URBAN}/handovers", params={"limit": 1}).json()
    confirmed = officer.post(f"/handovers/{handover['handover_id']}/confirm", json={})
    assert confirmed.status_code == 201 and confirmed.json()["confirmed_at"], confirmed.text
    assert officer.post(f"/handovers/{handover['handover_id']}/confirm", json={}).status_code == 409

    in_the_browser(stack, start)

    incident = post_overdue_report(officer)
    check_notices(stack.settings.bootstrap, incident, start)
    # names and mobiles never in plain text on a topic: the notices carry ids, the rosters sealed people
    for topic in (NOTIFICATIONS_REQUESTED.name, DUTY_ROSTERS.name, DUTY_LOG.name):
        raw = b"".join(r.value for r in read_records(stack.settings.bootstrap, topic))
        assert not [n for n in NAMES.values() if n.encode() in raw], topic
        assert not [n for n in NAMES.values() if json.dumps(n).encode() in raw], topic  # nor JSON-escaped
        assert b"@tz.example.cn" not in raw, topic
    # a viewer sees who is on duty, not how to reach them; an officer does
    viewer_token = new_token()
    publish_user(stack.settings.bootstrap, user_record("duty-viewer", Role.VIEWER, viewer_token,
                                                       now=datetime.now(timezone.utc), by="test"))
    viewer = httpx.Client(base_url=api, timeout=30, headers={"Authorization": f"Bearer {viewer_token}"})
    seen = eventually(lambda: viewer.get(f"/units/{OFFICE}/duty"), until=lambda r: r.status_code == 200, timeout=30,
                      every=0.3, what="the viewer known to the API").json()
    assert all(p["person"]["contacts"] is None for p in seen["posts"])
    assert all(p["person"]["contacts"]["email"] for p in officer.get(f"/units/{OFFICE}/duty").json()["posts"])

    # the terminal says the same, names unsealed with the key file
    now_local = datetime.now(SH)
    shown = cli(stack, "now", OFFICE)
    assert shown.returncode == 0, shown.stderr
    assert NAMES[expected(OFFICE, "officer", now_local, start)] in shown.stdout

    # worker and API restarted: the same answers, and a new report's notices still name the right people
    stack.kill_worker()
    stop_group(stack.api)
    stack.start_worker()
    stack.start_api()
    officer = httpx.Client(base_url=api, timeout=30, headers={"Authorization": f"Bearer {stack.token}"})
    assert duty_answers(officer, start) == before
    incident2 = post_overdue_report(officer)
    check_notices(stack.settings.bootstrap, incident2, start)
    admin.close()
    officer.close()
