"""The live pipeline on a local Apache Kafka: post, decide, notify; duplicates; dead letters; privacy."""

from __future__ import annotations

import base64
import json
import time

import pytest
from kafka import KafkaProducer

from tests.conftest import unique_id
from tests.waiting import eventually
from topics.catalog import DEAD_LETTERS, INCIDENTS_DECIDED, INCIDENTS_REPORTED, NOTIFICATIONS_REQUESTED

pytestmark = pytest.mark.e2e

NAME, PHONE, SUMMARY = "王小明", "13912345678", "王小明家中燃气泄漏爆炸，邻居受伤"


def report(report_id: str, **over) -> dict:
    body = {
        "report_id": report_id,
        "type": "燃气事故（管道燃气）",
        "occurred_at": "2026-11-22T09:15:00+08:00",
        "received_at": "2026-11-22T09:20:00+08:00",
        "location": {"street": "梨园镇", "address": "某小区3号楼", "key_area": []},
        "facts": {"deaths": 3, "injuries": 4},
        "flags": {"foreign_involved": False},
        "source": "110",
        "summary": SUMMARY,
        "reporter": {"name": NAME, "phone": PHONE},
    }
    body.update(over)
    return body


def wait_decided(client, incident_id: str, timeout: float = 2.0) -> tuple[dict, float]:
    start = time.monotonic()
    body = eventually(lambda: client.get(f"/incidents/{incident_id}").json(),
                      until=lambda b: b["status"] == "decided", timeout=timeout, every=0.05,
                      what=lambda b: f"a decision for {incident_id}: {b}")
    return body, time.monotonic() - start


def of_incident(records, incident_id: str) -> list[dict]:
    out = []
    for r in records:
        try:
            value = json.loads(r.value)
        except ValueError:  # the dead-letter test's garbage
            continue
        if isinstance(value, dict) and value.get("incident_id") == incident_id:
            out.append(value)
    return out


def test_post_decide_notify_within_two_seconds(service):
    rid = unique_id()
    with service.client() as c:
        resp = c.post("/incidents", json=report(rid))
        assert resp.status_code == 202, resp.text
        assert resp.json()["incident_id"] == rid
        body, _ = wait_decided(c, rid, timeout=2.0)
    decision = body["decision"]
    assert decision["grade"] == "较大" and decision["response_level"] == "一级"
    assert decision["lead_units"] == ["区城市管理委"]
    decided = of_incident(service.read_topic(INCIDENTS_DECIDED.name), rid)
    assert len(decided) == 1
    notes = [n for n in of_incident(service.read_topic(NOTIFICATIONS_REQUESTED.name), rid) if n["kind"] == "routing"]
    expected = {n["unit_id"] for n in decision["notify"] if not n["after_approval"]}
    assert {n["unit_id"] for n in notes} == expected
    assert len({n["dedup_key"] for n in notes}) == len(notes)
    assert "city_emergency_office" not in {n["unit_id"] for n in notes}  # waits for approval (4.1.3)


def test_same_report_twice_yields_nothing_new(service):
    rid = unique_id()
    with service.client() as c:
        assert c.post("/incidents", json=report(rid)).status_code == 202
        wait_decided(c, rid)
        first_decided = len(of_incident(service.read_topic(INCIDENTS_DECIDED.name), rid))
        first_notes = len(of_incident(service.read_topic(NOTIFICATIONS_REQUESTED.name), rid))
        again = c.post("/incidents", json=report(rid))  # a client's retry, its first 202 lost
        assert again.status_code == 202 and again.json()["incident_id"] == rid
        other = c.post("/incidents", json=report(rid, facts={"deaths": 0}, reporter={"name": "李四", "phone": PHONE}))
        assert other.status_code == 409 and other.json()["fields"][0]["field"] == "report_id"
        private = c.get(f"/incidents/{rid}/private").json()
    assert NAME in json.dumps(private, ensure_ascii=False)  # the first reporter stays
    stored = of_incident(service.read_topic(INCIDENTS_REPORTED.name), rid)
    assert len(stored) == 1  # the retry was answered, not sent again
    # the same record on the topic again (a producer's retry): the worker decides it once
    producer = KafkaProducer(bootstrap_servers=service.bootstrap, acks="all")
    producer.send(INCIDENTS_REPORTED.name, key=rid.encode(), value=json.dumps(stored[0]).encode()).get(timeout=10)
    producer.close()
    time.sleep(2.0)
    assert len(of_incident(service.read_topic(INCIDENTS_REPORTED.name), rid)) == 2
    assert len(of_incident(service.read_topic(INCIDENTS_DECIDED.name), rid)) == first_decided == 1
    assert len(of_incident(service.read_topic(NOTIFICATIONS_REQUESTED.name), rid)) == first_notes


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"\xff\xfe not json at all", None),
        (json.dumps({"id": "x", "incident_id": "x", "report": {"type": "gas"}}).encode(), "report.report_id"),
    ],
    ids=["bytes", "missing-fields"],
)
def test_garbage_goes_to_dead_letters_and_the_agent_keeps_going(service, raw, field):
    producer = KafkaProducer(bootstrap_servers=service.bootstrap, acks="all")
    producer.send(INCIDENTS_REPORTED.name, key=b"garbage", value=raw).get(timeout=10)
    producer.close()

    def letter() -> dict | None:
        values = (json.loads(r.value) for r in service.read_topic(DEAD_LETTERS.name, settle_s=0.5))
        return next((v for v in values if base64.b64decode(v["original_b64"]) == raw), None)

    found = eventually(letter, timeout=10, every=0.2, what="the dead letter")
    assert found["reason"] and found["source_topic"] == INCIDENTS_REPORTED.name
    if field:
        assert field in found["fields"]
    rid = unique_id()
    with service.client() as c:  # the agent is still alive
        assert c.post("/incidents", json=report(rid)).status_code == 202
        wait_decided(c, rid)


def test_plan_rejections_name_the_field(service):
    with service.client() as c:
        resp = c.post("/incidents", json=report(unique_id(), type="不存在的类型", location={"street": "火星街道"}))
    assert resp.status_code == 422
    fields = {f["field"] for f in resp.json()["fields"]}
    assert fields == {"type", "location.street"}


def test_personal_data_never_in_topics_or_logs(service):
    rid = unique_id()
    with service.client() as c:
        assert c.post("/incidents", json=report(rid)).status_code == 202
        wait_decided(c, rid)
    for spec in (INCIDENTS_REPORTED, INCIDENTS_DECIDED, NOTIFICATIONS_REQUESTED, DEAD_LETTERS):  # noqa: B007
        for r in service.read_topic(spec.name, settle_s=0.5):
            text = r.value.decode("utf-8", errors="replace")
            assert NAME not in text and PHONE not in text and SUMMARY not in text, spec.name
    reported = of_incident(service.read_topic(INCIDENTS_REPORTED.name), rid)[0]
    assert reported["private_sealed"]  # kept, encrypted
    logs = service.logs()
    assert rid in logs  # the log does speak of this incident …
    for private in (NAME, PHONE, SUMMARY):  # … but never of who reported it or what they said
        assert private not in logs


def test_private_details_only_for_roles_that_need_them(service):
    rid = unique_id()
    with service.client() as c:
        assert c.post("/incidents", json=report(rid)).status_code == 202
        wait_decided(c, rid)
        got = c.get(f"/incidents/{rid}/private").json()
        assert got["reporter"] == {"name": NAME, "phone": PHONE} and got["summary"] == SUMMARY
        public = json.dumps(c.get(f"/incidents/{rid}").json(), ensure_ascii=False)
        assert NAME not in public and PHONE not in public and SUMMARY not in public
    with service.client("viewer") as v:
        assert v.get(f"/incidents/{rid}/private").status_code == 403
        assert v.get(f"/incidents/{rid}").status_code == 200
        assert v.post("/incidents", json=report(unique_id())).status_code == 403
    with service.client("anonymous") as a:
        assert a.get(f"/incidents/{rid}").status_code == 401


def test_revoked_token_is_refused(service):
    with service.client("admin") as admin:
        token = admin.post("/users", json={"name": "short-lived", "role": "viewer"}).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert admin.get("/incidents", headers=headers).status_code == 200
        assert admin.delete("/users/short-lived").status_code == 200
        assert admin.get("/incidents", headers=headers).status_code == 401


def test_openapi_document(service):
    with service.client() as c:
        doc = c.get("/openapi.json").json()
    assert "/incidents" in doc["paths"] and "/incidents/{incident_id}" in doc["paths"]


def test_yingji_report_from_the_terminal(service, tmp_path):
    import os
    import subprocess
    import sys

    rid = unique_id("cli")
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report(rid), ensure_ascii=False), encoding="utf-8")
    env = {**os.environ, "YINGJI_BOOTSTRAP_SERVERS": service.bootstrap, "YINGJI_DATA_DIR": str(service.data_dir)}
    out = subprocess.run([sys.executable, "-m", "services.cli", "report", str(path)], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["incident_id"] == rid
    with service.client() as c:
        body, _ = wait_decided(c, rid)
        assert c.get(f"/incidents/{rid}/private").json()["reporter"]["name"] == NAME  # sealed with the service's key
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "燃气事故", "occurred_at": "2026-11-22T09:15:00"}', encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "services.cli", "report", str(bad)], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "occurred_at" in out.stderr and "received_at" in out.stderr
    assert "Traceback" not in out.stderr
