"""The incident's life through the HTTP API on the local Kafka: filings, follow-up regrade, approval,
end, and the timeline — with report times near now, so deadlines are live."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import unique_id
from tests.waiting import eventually

pytestmark = pytest.mark.e2e
REPORTS = {"phone_report", "written_report", "detailed_report"}  # owed by every incident from the start


def iso(t: datetime) -> str:
    return t.isoformat()


def wait_for(client, incident_id: str, predicate, timeout: float = 5.0) -> dict:
    return eventually(lambda: client.get(f"/incidents/{incident_id}").json(),
                      until=lambda body: body.get("status") != "reported" and predicate(body),
                      timeout=timeout, every=0.05,
                      what=lambda body: f"the condition on {incident_id}: {(body or {}).get('obligations')}")


def timeline_kinds(client, incident_id: str) -> list[str]:
    return [e["kind"] for e in client.get(f"/incidents/{incident_id}/timeline").json()["events"]]


def raise_incident(client, **over) -> str:
    now = datetime.now(timezone.utc)
    body = {
        "report_id": unique_id("life"),
        "type": "hazardous_chemicals_accident",
        "occurred_at": iso(now - timedelta(minutes=5)),
        "received_at": iso(now),
        "location": {"street": "台湖镇"},
        **over,
    }
    resp = client.post("/incidents", json=body)
    assert resp.status_code == 202, resp.text
    return resp.json()["incident_id"]


def obligation(body: dict, kind: str) -> dict:
    return next(o for o in body["obligations"] if o["kind"] == kind)


def test_phone_report_on_time_then_followup_regrades_then_approval_then_city_end(service):
    with service.client() as c:
        iid = raise_incident(c)
        body = wait_for(c, iid, lambda b: REPORTS <= {o["kind"] for o in b["obligations"]})
        assert body["decision"]["grade"] == "一般" and body["decision"]["response_level"] == "三级"
        now = datetime.now(timezone.utc)
        r = c.post(f"/incidents/{iid}/reports", json={"kind": "phone_report", "unit_id": "district_emergency_bureau",
                                                     "filed_at": iso(now), "filed_by": "值班员", "content": "电话报告内容"})
        assert r.status_code == 202, r.text
        wait_for(c, iid, lambda b: obligation(b, "phone_report")["status"] == "met")
        r = c.post(f"/incidents/{iid}/reports", json={"kind": "followup", "unit_id": "district_emergency_bureau",
                                                     "filed_at": iso(now), "filed_by": "值班员",
                                                     "followup": {"facts": {"deaths": 3}}})
        assert r.status_code == 202, r.text
        body = wait_for(c, iid, lambda b: b["decision"]["grade"] == "较大")
        assert body["decision"]["response_level"] == "一级"
        wait_for(c, iid, lambda b: any(o["kind"] == "city_report" for o in b["obligations"]))
        kinds = timeline_kinds(c, iid)
        assert {"regraded", "level_adjusted"} <= set(kinds)
        r = service.client("commander").post(f"/incidents/{iid}/approvals", json={"approver": "区应急委副主任", "approver_role": "deputy_director",
                                                       "approved_at": iso(now)})
        assert r.status_code == 202
        wait_for(c, iid, lambda b: any(n["unit_id"] == "city_emergency_office" for n in b["notifications"]))
        r = service.client("commander").post(f"/incidents/{iid}/end", json={
            "authority": "district_committee", "decided_by": "区应急委", "ended_at": iso(now)})
        assert r.status_code == 202
        eventually(lambda: "rejected" in timeline_kinds(c, iid), timeout=5, every=0.05,  # 较大: the city ends it (4.8.2)
                   what="the district's end rejected")
        r = service.client("commander").post(f"/incidents/{iid}/end", json={
            "authority": "city", "decided_by": "市应急办", "ended_at": iso(now)})
        body = wait_for(c, iid, lambda b: b["status"] == "ended")
        events = c.get(f"/incidents/{iid}/timeline").json()["events"]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    assert all(e["reason"] and e["at"] for e in events)


def test_general_event_ended_by_district_opens_evaluation_report(service):
    with service.client() as c:
        iid = raise_incident(c, type="燃气事故")
        wait_for(c, iid, lambda b: REPORTS <= {o["kind"] for o in b["obligations"]})
        now = datetime.now(timezone.utc)
        r = service.client("commander").post(f"/incidents/{iid}/end", json={
            "authority": "district_committee", "decided_by": "区应急委", "ended_at": iso(now), "announce_public": True})
        assert r.status_code == 202, r.text
        body = wait_for(c, iid, lambda b: b["status"] == "ended")
        body = wait_for(c, iid, lambda b: any(o["kind"] == "evaluation_report" for o in b["obligations"]))
        assert obligation(body, "evaluation_report")["owner"] == "区城市管理委"
        assert obligation(body, "phone_report")["status"] == "closed"
        # 4.8.2 必要时向社会发布: the committee decided so; the announcement is a release like any other
        assert obligation(body, "end_announcement")["owner"] == "区委宣传部"
        filing = {"kind": "end_announcement", "unit_id": "district_publicity_dept", "filed_at": iso(now + timedelta(minutes=40)),
                  "filed_by": "区委宣传部"}
        r = c.post(f"/incidents/{iid}/reports", json=filing)
        assert r.status_code == 422 and r.json()["fields"][0]["field"] == "release", r.text
        filing["release"] = {"drafted_by": "区委宣传部", "drafted_at": iso(now + timedelta(minutes=20)),
                             "approved_by": "区应急委", "approved_at": iso(now + timedelta(minutes=30))}
        assert c.post(f"/incidents/{iid}/reports", json=filing).status_code == 202
        wait_for(c, iid, lambda b: obligation(b, "end_announcement")["status"] == "met")


def test_breach_detected_within_a_second_then_late_filing(service):
    """A report received 9 min 57 s ago: the phone report falls due in 3 s, unfiled."""
    with service.client() as c:
        now = datetime.now(timezone.utc)
        iid = raise_incident(c, received_at=iso(now - timedelta(minutes=9, seconds=57)),
                             occurred_at=iso(now - timedelta(minutes=15)))
        wait_for(c, iid, lambda b: obligation(b, "phone_report")["status"] == "missed", timeout=10)
        events = c.get(f"/incidents/{iid}/timeline").json()["events"]
        breach = next(e for e in events if e["kind"] == "breach" and e["obligation"] == "phone_report")
        assert breach["details"]["detection_lag_s"] < 1.0, breach
        assert any(e["kind"] == "escalation" and e["obligation"] == "phone_report" for e in events)
        assert any(e["kind"] == "reminder" and e["obligation"] == "phone_report" for e in events)
        r = c.post(f"/incidents/{iid}/reports", json={"kind": "phone_report", "unit_id": "district_emergency_bureau",
                                                     "filed_at": iso(datetime.now(timezone.utc)), "filed_by": "值班员"})
        assert r.status_code == 202
        body = wait_for(c, iid, lambda b: obligation(b, "phone_report")["status"] == "late")
        assert obligation(body, "phone_report")["minutes_late"] >= 0


def test_commands_on_unknown_incidents_and_bad_bodies(service):
    with service.client() as c:
        now = iso(datetime.now(timezone.utc))
        assert service.client("commander").post("/incidents/nope/approvals", json={
            "approver": "x", "approver_role": "director", "approved_at": now}).status_code == 404
        iid = raise_incident(c)
        r = c.post(f"/incidents/{iid}/reports", json={"kind": "followup", "unit_id": "x", "filed_at": now,
                                                     "filed_by": "值班员"})
        assert r.status_code == 422 and r.json()["fields"][0]["field"] == "followup"
        r = c.post(f"/incidents/{iid}/reports", json={"kind": "phone_report", "unit_id": "x",
                                                     "filed_at": "2026-11-22T09:00:00", "filed_by": "值班员"})
        assert r.status_code == 422 and r.json()["fields"][0]["field"] == "filed_at"


def test_a_filing_sent_again_with_its_request_id_is_applied_once(service):
    """A lost 202 or a double click: the client sends the same request (same request_id) again."""
    with service.client() as c:
        iid = raise_incident(c)
        wait_for(c, iid, lambda b: REPORTS <= {o["kind"] for o in b["obligations"]})
        body = {"kind": "followup", "unit_id": "district_emergency_bureau", "filed_at": iso(datetime.now(timezone.utc)),
                "filed_by": "值班员", "followup": {"facts": {"injuries": 2}}, "request_id": unique_id("req")}
        first, again = c.post(f"/incidents/{iid}/reports", json=body), c.post(f"/incidents/{iid}/reports", json=body)
        assert first.status_code == again.status_code == 202
        assert first.json()["command_id"] == again.json()["command_id"]
        wait_for(c, iid, lambda b: b["decision"]["response_level"] == "二级")
        # the same request_id on an edited request (sent again after an error, changed): applied too
        other = c.post(f"/incidents/{iid}/reports", json={**body, "followup": {"facts": {"injuries": 3}}})
        assert other.status_code == 202 and other.json()["command_id"] != first.json()["command_id"]
        eventually(lambda: timeline_kinds(c, iid).count("report_filed") >= 2, timeout=5, every=0.05,
                   what="both filings on the timeline")
        time.sleep(1.0)  # long enough for a second copy of the first to show, were it applied
        assert timeline_kinds(c, iid).count("report_filed") == 2  # the first once, the other once


def test_a_release_is_refused_without_approval_and_published_with_it_and_an_undetermined_grade_is_settled(service):
    """4.7.1 and 4.1.3 (issue 23) through the API on the local Kafka: a release with no approval is a 422
    naming `release`, nothing written; one with its draft and approval is on the timeline as three
    steps and meets the first release; a follow-up that settles a 未判明 grade meets the 研判定级."""
    with service.client() as c:
        iid = raise_incident(c, type="information_security_incident", location={"street": "文景街道"})
        body = wait_for(c, iid, lambda b: any(o["kind"] == "grade_determination" for o in b["obligations"]))
        assert body["decision"]["grade"] == "未判明"
        now = datetime.now(timezone.utc)
        bare = {"kind": "first_release", "unit_id": "district_publicity_dept", "filed_at": iso(now), "filed_by": "区委宣传部"}
        r = c.post(f"/incidents/{iid}/reports", json=bare)
        assert r.status_code == 422 and [f["field"] for f in r.json()["fields"]] == ["release"], r.text
        backwards = {**bare, "release": {"drafted_by": "区委网信办", "drafted_at": iso(now - timedelta(minutes=5)),
                                         "approved_by": "现场指挥部", "approved_at": iso(now + timedelta(minutes=5))}}
        r = c.post(f"/incidents/{iid}/reports", json=backwards)
        assert r.status_code == 422 and r.json()["fields"][0]["field"] == "release.approved_at", r.text
        assert "report_filed" not in timeline_kinds(c, iid)  # nothing was written
        approved = {**bare, "release": {"drafted_by": "区委网信办", "drafted_at": iso(now - timedelta(minutes=5)),
                                        "approved_by": "现场指挥部", "approved_at": iso(now - timedelta(minutes=1))}}
        r = c.post(f"/incidents/{iid}/reports", json=approved)
        assert r.status_code == 202, r.text
        wait_for(c, iid, lambda b: obligation(b, "first_release")["status"] == "met")
        kinds = timeline_kinds(c, iid)
        assert kinds.index("release_drafted") < kinds.index("release_approved") < kinds.index("report_filed")
        r = c.post(f"/incidents/{iid}/reports", json={"kind": "followup", "unit_id": "district_cyberspace_office",
                                                     "filed_at": iso(now), "filed_by": "值班员",
                                                     "followup": {"asserted_grade": "一般", "asserted_by": "区委网信办"}})
        assert r.status_code == 202, r.text
        body = wait_for(c, iid, lambda b: b["decision"]["grade"] == "一般")
        assert obligation(body, "grade_determination")["status"] == "met"
        assert obligation(body, "release_caliber")["status"] == "open"  # 一般 now: the lead's 口径 is owed
