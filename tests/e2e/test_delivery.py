"""Reaching people, end to end (issue 19): the local Apache Kafka, the worker, the API, the delivery
stage and the local sinks (a real SMTP server, aiosmtpd, keeping a Maildir; HTTP servers speaking the
企业微信 and 钉钉 robot contracts, the 钉钉 one checking the signature, both answering 45009 past 20 a
minute; the SMS gateway's signed webhook), each its own process as `yingji run` starts them.

A 一级 report reaches the person on duty of every notified unit on each of their four channels, once.
An ack link opened (GET, HEAD) acknowledges nothing; its button (POST) acknowledges, and that notice's
ladder stops; every other notice walks the ladder (本单位值班主任, 本单位带班领导, 区应急办值班主任),
each step once. The ladder's pace comes from a test ladder.yaml (15 s a step instead of 3 minutes):
the same code, the YAML the office would edit."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import mailbox
import re
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from playbooks.delivery.ladder import LADDER_FILE
from playbooks.plan import load_plan
from services.duty.book import publish, to_record
from services.local.kafka import free_port, free_port_run
from services.local.sinks import mail_dir, sinks_dir
from services.local.stack import LocalStack
from services.privacy import Sealer
from services.settings import Settings
from services.users import new_token, publish_user, user_record
from tests.conftest import read_all, unique_id
from tests.waiting import eventually
from topics.catalog import DELIVERIES, NOTIFICATIONS_REQUESTED
from topics.duty import Contacts, Person, Roster, Rotation
from topics.models import Post, Role

pytestmark = pytest.mark.e2e
SH = ZoneInfo("Asia/Shanghai")
STEP_S = 12
LINK = re.compile(r"/ack/([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)")
POSTS = {"officer": Post.officer, "chief": Post.chief, "leader": Post.leader}


def person_id(unit: str, post: str) -> str:
    return f"{unit[:30]}-{post}"


def roster_records(units: list[str], sealer: Sealer, now: datetime) -> list:
    """Every unit: a 值班员, a 值班主任 and a 带班领导 on a daily rotation, each with all four contacts."""
    start = datetime(2026, 1, 1, 8, 30, tzinfo=SH)
    out = []
    for i, unit in enumerate(units):
        people, rotations = [], []
        for j, post in enumerate(POSTS):
            pid = person_id(unit, post)
            people.append(Person(id=pid, name=f"测试{i}{j}", unit_id=unit, post=POSTS[post], is_leader=post == "leader",
                                 employment="regular",
                                 contacts=Contacts(mobile=f"139{i:04d}{j:04d}", email=f"{pid}@example.cn",
                                                   chat_ids={"wecom": f"wx-{pid}", "dingtalk": f"dd-{pid}"})))
            rotations.append(Rotation(id=f"rot-{unit[:20]}-{post}", unit_id=unit, post=POSTS[post], people=[pid],
                                      rrule="FREQ=DAILY", dtstart=start))
        out.append(to_record(Roster(people=people, rotations=rotations), unit, sealer, source="json", now=now, by="e2e"))
    return out


def link_owner(token: str) -> tuple[str, str]:
    """(dedup_key, person) a link names: its payload, read without the key (the test checks routing)."""
    payload = token.split(".")[0]
    _, dedup_key, person, _ = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode().split("\n")
    return dedup_key, person


def first_links(text: str) -> list[str]:
    """The ack links of the notices themselves in a message (a digest holds several), not of ladder steps."""
    out, prev = [], 0
    for m in LINK.finditer(text):
        if "未阅上报" not in text[prev:m.start()]:
            out.append(m.group(1))
        prev = m.end()
    return out


def received(data_dir: Path) -> dict[str, Counter]:
    """Per channel, how many messages each (dedup_key, person) got, read from the sinks' own stores."""
    out: dict[str, Counter] = {c: Counter() for c in ("email", "wecom", "dingtalk", "sms")}
    box = mailbox.Maildir(mail_dir(data_dir), create=False)
    for key in box.keys():
        msg = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
        for token in first_links(msg["Subject"] + "\n" + msg.get_content()):
            out["email"][link_owner(token)] += 1
    for robot in ("wecom", "dingtalk", "sms"):
        path = sinks_dir(data_dir) / f"{robot}.jsonl"
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            for token in first_links(json.dumps(json.loads(line)["body"], ensure_ascii=False)):
                out[robot][link_owner(token)] += 1
    return out


@pytest.fixture()
def delivery_stack(tmp_path):
    ladder = yaml.safe_load(LADDER_FILE.read_text(encoding="utf-8"))
    for level in ladder["minutes"].values():
        level["value"] = STEP_S / 60
    ladder["default_minutes"]["value"] = STEP_S / 60
    ladder_file = tmp_path / "ladder.yaml"
    ladder_file.write_text(yaml.safe_dump(ladder, allow_unicode=True), encoding="utf-8")
    settings = Settings(data_dir=tmp_path, kafka_port=free_port(), kafka_controller_port=free_port(),
                        api_port=free_port(), worker_web_port=free_port_run(1), app_id=unique_id("dlv"),
                        sinks_smtp_port=free_port(), sinks_http_port=free_port(), delivery_web_port=free_port(),
                        ladder_file=ladder_file)
    log = (tmp_path / "stack.log").open("wb")
    st = LocalStack(settings, log=log)
    st.start_broker()
    token = new_token()
    publish_user(settings.bootstrap, user_record("dlv-officer", Role.DUTY_OFFICER, token, now=datetime.now(timezone.utc),
                                                 by="test"))
    st.token = token  # type: ignore[attr-defined]
    try:
        yield st
    finally:
        st.stop()
        log.close()


def start(st: LocalStack, units: list[str]) -> None:
    s = st.settings
    publish(s.bootstrap, roster_records(units, Sealer.from_file(s.key_file), datetime.now(timezone.utc)), [])
    # the ladder file reaches the stage as the office's own would: through its setting
    st.start_sinks()
    st.start_worker()
    st.start_delivery(env={"YINGJI_LADDER_FILE": str(s.ladder_file)})
    st.start_api()


def deliveries(st: LocalStack, incident: str, *, settle_s: float = 1.5) -> list[dict]:
    """The incident's records on the deliveries topic (settle_s: read_records'; 0 in a probe of `eventually`)."""
    return [r["body"] for r in read_all(st.settings.bootstrap, DELIVERIES.name, settle_s=settle_s)
            if r["body"].get("incident_id") == incident or r["body"].get("notice", {}).get("incident_id") == incident]


def in_the_browser(st: LocalStack, incident: str, token: str, lead_unit: str, notices: int) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.pages.conftest import CHROMIUM_ARGS

    api = st.settings.api_url
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai")
        errors: list[str] = []
        board = context.new_page()
        board.on("pageerror", lambda e: errors.append(str(e)))
        board.goto(f"{api}/login?next=/incidents/{incident}/page")
        board.get_by_label("访问令牌").fill(st.token)  # type: ignore[attr-defined]
        board.get_by_role("button", name="登录").click()
        rows = board.locator("#deliveries tbody tr")
        expect(rows).to_have_count(notices, timeout=20_000)
        lead_row = board.locator(f'#deliveries tbody tr[data-unit="{lead_unit}"]')
        expect(lead_row.locator('[data-col="sent"]')).to_contain_text("已发送", timeout=20_000)
        expect(lead_row.locator('[data-col="acked"]')).to_have_text("—")
        link = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai").new_page()  # no sign-in: the token is enough
        link.on("pageerror", lambda e: errors.append(str(e)))
        link.goto(f"{api}/ack/{token}")
        expect(link.locator("#ack-unit")).to_be_visible()
        link.get_by_role("button", name="已阅").click()
        expect(link.locator("#ack-done")).to_be_visible()
        expect(lead_row.locator('[data-col="acked"]')).to_contain_text("已阅", timeout=20_000)  # live, no reload
        for i in range(notices):
            expect(rows.nth(i).locator('[data-col="sent"]')).to_contain_text("已发送")
            expect(rows.nth(i).locator('[data-col="delivered"]')).to_contain_text("已送达")  # the robots' errcode 0
        browser.close()
    assert errors == []


def test_a_level_1_report_reaches_every_unit_once_an_ack_stops_its_ladder_and_the_rest_walk_it(delivery_stack):
    st = delivery_stack
    plan = load_plan()
    units = sorted(plan.units)
    start(st, units)
    api = st.settings.api_url
    officer = httpx.Client(base_url=api, timeout=30, headers={"Authorization": f"Bearer {st.token}"})
    now = datetime.now(timezone.utc).astimezone(SH).isoformat()
    rid = unique_id("dlv")
    report = {"report_id": rid, "type": "燃气事故（管道燃气）", "occurred_at": now, "received_at": now,
              "location": {"street": "梨园镇", "address": "某小区", "key_area": []}, "facts": {"deaths": 3, "injuries": 4},
              "flags": {"foreign_involved": False}, "source": "110", "summary": "燃气管道泄漏"}
    resp = eventually(lambda: officer.post("/incidents", json=report), until=lambda r: r.status_code == 202,
                      timeout=60, every=0.5, retry_on=(httpx.HTTPError,), what="the report accepted")
    assert resp.json()["incident_id"] == rid

    notices = eventually(
        lambda: [n for n in read_all(st.settings.bootstrap, NOTIFICATIONS_REQUESTED.name, settle_s=0)
                 if n["incident_id"] == rid and n["kind"] == "routing"],
        timeout=60, every=0.5, what="the routing notices")
    assert all(n["level"] == "一级" for n in notices)
    keys = {n["dedup_key"]: n for n in notices}
    # each notice's person, as the worker named them at the notice's time
    person_of = {k: n["on_duty"]["person_id"] for k, n in keys.items()}
    assert all(person_of.values()), "every notified unit has a roster: every notice names its person"

    # 1. every notice reaches its person on each of the four channels, once
    def all_in() -> dict[str, Counter]:
        got = received(st.settings.data_dir)
        return got if all(got[c][(k, p)] >= 1 for k, p in person_of.items() for c in got) else {}

    got = eventually(all_in, timeout=60, every=1, what=lambda _: f"every channel of every notice: {received(st.settings.data_dir)}")
    for channel, counts in got.items():
        for k, p in person_of.items():
            assert counts[(k, p)] == 1, f"{channel}: {k} to {p} arrived {counts[(k, p)]} times"
    mail = [email.message_from_bytes(mailbox.Maildir(mail_dir(st.settings.data_dir), create=False).get_bytes(key),
                                     policy=email.policy.default)
            for key in mailbox.Maildir(mail_dir(st.settings.data_dir), create=False).keys()]
    assert all(m["Subject"].startswith(("【一级】", "【未阅上报")) for m in mail)

    # 2. the lead unit's officer opens the link: GET and HEAD acknowledge nothing; the button does
    lead = next(k for k, n in keys.items() if n["unit_id"] == "district_urban_management_commission")
    # the officer's own link (on a loaded machine the ladder's first step may already have mailed the chief)
    token = next(t for m in mail for t in LINK.findall(m.get_content()) if link_owner(t) == (lead, person_of[lead]))
    page = httpx.get(f"{api}/ack/{token}", timeout=10)
    assert page.status_code == 200 and "已阅" in page.text
    assert httpx.head(f"{api}/ack/{token}", timeout=10).status_code == 200
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert httpx.post(f"{api}/ack/{forged}", timeout=10).status_code == 403
    time.sleep(1)
    assert not [b for b in deliveries(st, rid) if b["record"] == "ack"], "a GET, a HEAD or a forged token acknowledged"
    # the link's button is a form POST: acknowledged at once (before step 1, STEP_S after the notice)
    acked = httpx.post(f"{api}/ack/{token}", timeout=10, follow_redirects=True)
    assert acked.status_code == 200 and "已确认已阅" in acked.text, acked.text
    acks = eventually(lambda: [b for b in deliveries(st, rid, settle_s=0) if b["record"] == "ack"], timeout=20,
                      what="the ack on the deliveries topic")
    assert [(a["dedup_key"], a["person_id"], a["how"]) for a in acks] == [(lead, person_of[lead], "link")]
    again = httpx.post(f"{api}/ack/{token}", timeout=10, follow_redirects=True)  # a second click: the same ack
    assert again.status_code == 200 and "已确认已阅" in again.text
    time.sleep(1)
    assert len([b for b in deliveries(st, rid) if b["record"] == "ack"]) == 1
    # in Chromium: the incident page open, another unit's ack link opened in another tab without sign-in and
    # its button clicked; the page shows 已阅 for that unit without a reload (live), and 已发送 for every unit
    second = next(k for k, n in keys.items() if n["unit_id"] == "district_emergency_office")
    token2 = next(t for m in mail for t in LINK.findall(m.get_content()) if link_owner(t)[0] == second)
    in_the_browser(st, rid, token2, keys[second]["unit_id"], len(keys))

    # 3. the ladder: the notice acknowledged at once takes no step; every other one not acknowledged takes
    # steps 1, 2, 3, each once (the one acknowledged in the browser stops wherever it was)
    others = set(keys) - {lead, second}

    def walked() -> list[dict]:
        steps = [b for b in deliveries(st, rid, settle_s=0) if b["record"] == "ladder_step"]
        return steps if {(s["dedup_key"], s["step"]) for s in steps} >= {(k, n) for k in others for n in (1, 2, 3)} else []

    steps = eventually(walked, timeout=4 * STEP_S + 60, every=2, what="every unacknowledged notice up the whole ladder")
    time.sleep(2)
    steps = [b for b in deliveries(st, rid) if b["record"] == "ladder_step"]
    # an ack stops the ladder: no step of the lead's notice after its ack (on a loaded machine the ack may
    # come after step 1's own time, and that step was rightly taken)
    ack_at = datetime.fromisoformat(acks[0]["at"])
    late = [s for s in steps if s["dedup_key"] == lead and datetime.fromisoformat(s["at"]) >= ack_at]
    assert not late, f"an acknowledged notice went up the ladder after its ack: {late}"
    taken = Counter((s["dedup_key"], s["step"]) for s in steps)
    assert all(v == 1 for v in taken.values()), f"a step taken twice: {[k for k, v in taken.items() if v > 1]}"
    for s in steps:
        unit = keys[s["dedup_key"]]["unit_id"]
        want = {1: person_id(unit, "chief"), 2: person_id(unit, "leader"),
                3: person_id("district_emergency_office", "chief")}[s["step"]]
        assert s["person_id"] == want, s
        assert s["channels"] == ["wecom", "dingtalk", "sms", "email"]
    # each step's person got each step's message on every channel, once
    step_sends = Counter((b["dedup_key"], b["step"], b["person_id"], b["channel"]) for b in deliveries(st, rid)
                         if b["record"] == "delivery" and b["state"] == "accepted")
    second_steps = [s["step"] for s in steps if s["dedup_key"] == second]
    assert second_steps == sorted(set(second_steps)), "a step of the notice acknowledged in the browser taken twice"
    assert all(v == 1 for v in step_sends.values())
    assert {(k, n) for k, n, _, _ in step_sends} >= {(k, n) for k in others for n in (1, 2, 3)}
    officer.close()
