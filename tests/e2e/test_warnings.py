"""Warnings end to end (issue 20) on the local Kafka, the API, the delivery stage and the local sinks,
each its own process: an 橙 warning drafted, approved twice, issued, adjusted to 红 and lifted through
the API; each step's CAP validates against the OASIS XSD; the units and streets it names are told
through the delivery stage (mail in the SMTP server's Maildir to the person on duty); a drill's warning
is Exercise and reaches the drill mailbox only; the API restarted reads the warnings back."""

from __future__ import annotations

import email
import email.policy
import mailbox
from collections import Counter
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from playbooks.plan import load_plan
from playbooks.warning.cap import validate
from services.local.sinks import mail_dir
from services.local.stack import stop_group
from tests.conftest import read_all
from tests.e2e.test_delivery import delivery_stack, person_id, start  # noqa: F401 - the fixture
from tests.waiting import eventually
from topics.catalog import DELIVERIES, DRILL_NOTIFICATIONS, NOTIFICATIONS_REQUESTED, WARNING_EVENTS

pytestmark = pytest.mark.e2e
OFFICE = "district_emergency_office"
HIGH = ["collect", "analyse", "publish_forecast", "advise_public", "standby", "evacuate"]


def mails(data_dir) -> list:
    box = mailbox.Maildir(mail_dir(data_dir), create=False)
    return [email.message_from_bytes(box.get_bytes(k), policy=email.policy.default) for k in box.keys()]


def test_an_orange_warning_issued_raised_to_red_and_lifted_tells_its_units_and_streets(delivery_stack):
    st = delivery_stack
    plan = load_plan()
    units = [OFFICE, "district_meteorological_bureau", "hq_meteorological_disaster", "street_zhongcang", "town_songzhuang"]
    start(st, units)
    api = st.settings.api_url
    officer = httpx.Client(base_url=api, timeout=30, headers={"Authorization": f"Bearer {st.token}"})
    from services.users import new_token, publish_user, user_record
    from topics.models import Role

    token = new_token()
    publish_user(st.settings.bootstrap, user_record("w-commander", Role.COMMANDER, token, now=datetime.now(timezone.utc), by="e2e"))
    commander = httpx.Client(base_url=api, timeout=30, headers={"Authorization": f"Bearer {token}"})
    body = {"warning_id": "w-e2e-1", "unit": OFFICE, "content": {
        "category": "rainstorm", "level": "orange", "start": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat(),
        "area": ["street_zhongcang", "town_songzhuang"], "hazards": "预计未来6小时降雨量将达100毫米以上",
        "measures": HIGH, "issuer": OFFICE}}
    r = eventually(lambda: officer.post("/warnings", json=body), until=lambda r: r.status_code == 201, timeout=60,
                   every=0.5, retry_on=(httpx.HTTPError,), what=lambda r: f"the draft kept: {r.text if r else ''}")
    # bad input through the API: a 红 not issued without approvals, a street issuing, measures missing
    assert officer.post("/warnings/w-e2e-1/issue", json={"unit": OFFICE}).status_code == 422
    bad = {**body, "warning_id": "w-e2e-bad", "unit": "street_zhongcang",
           "content": {**body["content"], "level": "blue", "issuer": "street_zhongcang", "measures": []}}
    refused = officer.post("/warnings", json=bad)
    assert refused.status_code == 422 and {"unit", "content.measures"} <= {f["field"] for f in refused.json()["fields"]}
    for approval, unit, who in (("district_leader", "district_government", "分管副区长"),
                                ("city_office", "city_emergency_office", "市应急办值班室")):
        r = commander.post("/warnings/w-e2e-1/approvals", json={"unit": unit, "approval": approval, "approver": who})
        assert r.status_code == 200, r.text
    assert officer.post("/warnings/w-e2e-1/issue", json={"unit": OFFICE}).status_code == 200
    r = commander.post("/warnings/w-e2e-1/adjust", json={"unit": OFFICE, "level": "red", "approver": "区应急委副主任",
                                                         "measures": HIGH})
    assert r.status_code == 200 and r.json()["level"] == "red", r.text
    r = officer.post("/warnings/w-e2e-1/lift", json={"unit": OFFICE, "reason": "降雨结束"})
    assert r.status_code == 200 and r.json()["status"] == "lifted"

    # every step on the topic, each step's CAP valid: Draft, Alert, Update, Cancel
    events = [e for e in read_all(st.settings.bootstrap, WARNING_EVENTS.name) if e["warning_id"] == "w-e2e-1"]
    assert [e["kind"] for e in events] == ["drafted", "approved", "approved", "issued", "adjusted", "lifted"]
    types = []
    for e in events:
        if e["kind"] in ("drafted", "issued", "adjusted", "lifted"):
            xml = officer.get(f"/warnings/w-e2e-1/cap/{e['seq']}").content
            assert validate(xml) == [], e["kind"]
            types.append((xml.split(b"<status>")[1].split(b"<")[0], xml.split(b"<msgType>")[1].split(b"<")[0]))
    assert types == [(b"Draft", b"Alert"), (b"Actual", b"Alert"), (b"Actual", b"Update"), (b"Actual", b"Cancel")]
    assert b"w-e2e-1" not in httpx.get(f"{api}/warnings/feed.atom").content  # lifted: not live

    # the units and streets it names are told through the delivery stage: every street (橙 and up), the
    # HQ and the department; the people on duty of the units with a roster get the mail
    issued = next(e for e in events if e["kind"] == "issued")
    streets = [u.id for u in plan.units.values() if u.kind == "street"]
    assert set(streets) | {"hq_meteorological_disaster", "district_meteorological_bureau"} <= set(issued["told"])
    notices = [n for n in read_all(st.settings.bootstrap, NOTIFICATIONS_REQUESTED.name) if n["incident_id"] == "w-e2e-1"]
    assert {n["unit_id"] for n in notices if n["dedup_key"].startswith("w-e2e-1.w4.")} == set(issued["told"])
    lifted = next(e for e in events if e["kind"] == "lifted")
    assert set(issued["told"]) <= set(lifted["told"])  # 3.2.7: everyone told of the issue is told of the lift

    def mail_to() -> Counter:
        got = Counter()
        for m in mails(st.settings.data_dir):
            key = (m["X-Yingji-Dedup-Key"] or "").strip()
            if key.startswith("w-e2e-1."):
                got[(key, str(m["To"]))] += 1
        return got

    # a unit with no roster is answered by 区应急办's 值班主任 (duty.yaml's fallback): one mail per notice
    want = {(f"w-e2e-1.{step}.{u}", f"{person_id(u, 'officer')}@example.cn") for step in ("w4", "w5", "w6")
            for u in ("street_zhongcang", "district_meteorological_bureau")}
    got = eventually(mail_to, until=lambda g: want <= set(g), timeout=90, every=1,
                     what=lambda g: f"the warning's mail to the people on duty: {sorted(want - set(g or {}))}")
    assert all(v == 1 for v in got.values()), got

    # a drill's warning: Exercise, told on the drill topic only, its mail to the drill mailbox only
    drill = {**body, "warning_id": "w-e2e-drill", "unit": "district_meteorological_bureau", "drill": True,
             "content": {**body["content"], "level": "blue", "issuer": "district_meteorological_bureau",
                         "measures": HIGH[:4]}}
    assert officer.post("/warnings", json=drill).status_code == 201
    assert officer.post("/warnings/w-e2e-drill/issue", json={"unit": "district_meteorological_bureau"}).status_code == 200
    assert b"<status>Exercise</status>" in officer.get("/warnings/w-e2e-drill/cap").content
    drill_notices = [n for n in read_all(st.settings.bootstrap, DRILL_NOTIFICATIONS.name) if n["incident_id"] == "w-e2e-drill"]
    assert drill_notices and not [n for n in read_all(st.settings.bootstrap, NOTIFICATIONS_REQUESTED.name)
                                  if n["incident_id"] == "w-e2e-drill"]

    def drill_mail() -> list:
        return [m for m in mails(st.settings.data_dir) if (m["X-Yingji-Dedup-Key"] or "").strip().startswith("w-e2e-drill.")]

    sent = eventually(drill_mail, until=lambda ms: len(ms) >= len(drill_notices), timeout=60, every=1,
                      what="the drill warning's mail")
    assert {str(m["To"]) for m in sent} == {"drill@localhost"} and all(m["Subject"].startswith("【演练】") for m in sent)
    taken = [b["body"] for b in read_all(st.settings.bootstrap, DELIVERIES.name)
             if b["body"].get("record") == "notice" and b["body"]["dedup_key"].startswith("w-e2e-drill.")]
    assert taken and all(t["rule"] == "drill" for t in taken)

    # a drill controller's scenario injects a warning: run on the live service, through the same rules
    ctl_token = new_token()
    publish_user(st.settings.bootstrap, user_record("w-drill", Role.DRILL_CONTROLLER, ctl_token,
                                                    now=datetime.now(timezone.utc), by="e2e"))
    controller = httpx.Client(base_url=api, timeout=30, headers={"Authorization": f"Bearer {ctl_token}"})
    scenario = """
id: storm
name: 暴雨预警演练
kind: 单项
organiser: 区应急办
objectives: [预警发布与解除]
start: 2026-07-20T14:00:00+08:00
duration: "02:00"
injects:
  - {at: "00:00", action: warning, step: draft, incident: rain, unit: 区气象局, category: rainstorm, level: blue,
     area: [中仓街道], hazards: 预计降雨50毫米, measures: [collect, analyse, publish_forecast, advise_public]}
  - {at: "00:05", action: warning, step: issue, incident: rain, unit: 区气象局}
  - {at: "01:30", action: warning, step: lift, incident: rain, unit: 区气象局, reason: 降雨结束}
"""
    run = eventually(lambda: controller.post("/drills", json={"scenario": scenario, "speed": 3600}),
                     until=lambda r: r.status_code == 202, timeout=30, every=0.5, what="the drill started")
    run_id = run.json()["run_id"]
    eventually(lambda: controller.get(f"/drills/{run_id}").json(), until=lambda b: b["status"] in ("done", "failed"),
               timeout=60, every=0.5, what="the drill done")
    wid = f"{run_id}.storm.rain"
    drilled = [e for e in read_all(st.settings.bootstrap, WARNING_EVENTS.name) if e["warning_id"] == wid]
    assert [e["kind"] for e in drilled] == ["drafted", "issued", "lifted"] and all(e["drill"] for e in drilled)
    assert b"<status>Exercise</status>" in officer.get(f"/warnings/{wid}/cap").content
    controller.close()

    # the API restarted reads every warning back
    stop_group(st.api)
    st.start_api()
    again = httpx.Client(base_url=api, timeout=30, headers={"Authorization": f"Bearer {st.token}"})
    after = eventually(lambda: again.get("/warnings/w-e2e-1"), until=lambda r: r.status_code == 200, timeout=30,
                       every=0.5, retry_on=(httpx.HTTPError,), what="the warning after a restart")
    assert after.json()["status"] == "lifted" and len(after.json()["history"]) == 6
    for c in (officer, commander, again):
        c.close()
