"""What the API refuses before anything reaches the broker: a used report id with other content, and a
command on a drill's incident. No broker here: an accepted request would answer 503."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient

from playbooks.plan import load_plan
from services.web.app import create_app
from services.intake import accept
from services.settings import Settings
from services.users import new_token, user_record
from topics.catalog import INCIDENTS_REPORTED
from topics.models import Role
from topics.requests import ReportSubmission

NOW = datetime(2026, 11, 26, tzinfo=timezone.utc)
BODY = {
    "type": "燃气事故", "occurred_at": "2026-11-26T09:15:00+08:00", "received_at": "2026-11-26T09:20:00+08:00",
    "location": {"street": "梨园镇"}, "facts": {"deaths": 3}, "reporter": {"name": "王某", "phone": "13800000000"},
}
FILING = {"kind": "phone_report", "unit_id": "district_urban_management_commission",
          "filed_at": "2026-11-26T09:25:00+08:00", "filed_by": "值班员甲"}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("conflicts"), bootstrap_servers="127.0.0.1:1"))
    token = new_token()
    app.state.users.apply(user_record("officer", Role.DUTY_OFFICER, token, now=NOW, by="test"))
    client = TestClient(app, headers={"Authorization": f"Bearer {token}"})  # no lifespan: no broker
    return app, client


def known(app, report_id: str, *, drill: bool = False, **over) -> None:
    """As if the API had produced it and read it back from the reported topic."""
    sub = ReportSubmission.model_validate({**BODY, **over, "report_id": report_id})
    rec = accept(sub, plan=load_plan(), sealer=app.state.sealer, now=NOW, drill=drill)
    app.state.view.apply(INCIDENTS_REPORTED.name, rec.model_dump_json().encode())


def test_a_retry_of_the_same_report_is_answered_again_without_a_broker(api):
    app, client = api
    known(app, "r-retry-1")
    resp = client.post("/incidents", json={**BODY, "report_id": "r-retry-1"})
    assert resp.status_code == 202, resp.text
    assert resp.json()["incident_id"] == "r-retry-1"


@pytest.mark.parametrize("change", [{"facts": {"deaths": 0}}, {"reporter": {"name": "李四", "phone": "13800000000"}}],
                         ids=["facts", "reporter"])
def test_a_used_report_id_with_other_content_is_a_conflict_naming_it(api, change):
    app, client = api
    known(app, "r-used-1")
    resp = client.post("/incidents", json={**BODY, **change, "report_id": "r-used-1"})
    assert resp.status_code == 409, resp.text
    assert resp.json()["fields"][0]["field"] == "report_id"


def test_the_view_keeps_the_first_report_of_an_id(api):
    app, _ = api
    known(app, "r-first-1")
    known(app, "r-first-1", facts={"deaths": 0})
    assert app.state.view.incidents["r-first-1"].reported.report.facts.deaths == 3


def test_a_command_on_a_drill_incident_is_refused_naming_it(api):
    app, client = api
    known(app, "r-drill-1", drill=True)
    resp = client.post("/incidents/r-drill-1/reports", json=FILING)
    assert resp.status_code == 409, resp.text
    assert resp.json()["fields"][0]["field"] == "incident_id"
    known(app, "r-live-1")
    assert client.post("/incidents/r-live-1/reports", json=FILING).status_code == 503  # live: on to the broker


@pytest.fixture
def admin_api(tmp_path):
    app = create_app(Settings(data_dir=tmp_path, bootstrap_servers="127.0.0.1:1"))
    token = new_token()
    app.state.users.apply(user_record("admin", Role.ADMIN, token, now=NOW, by="test"))
    app.state.users.apply(user_record("zhang", Role.DUTY_OFFICER, new_token(), now=NOW, by="test"))
    return app, TestClient(app, headers={"Authorization": f"Bearer {token}"})


def test_adding_a_user_who_exists_is_a_conflict_not_a_silent_new_token(admin_api):
    app, client = admin_api
    resp = client.post("/users", json={"name": "zhang", "role": "viewer"})
    assert resp.status_code == 409 and resp.json()["fields"][0]["field"] == "name"
    assert app.state.users.by_name["zhang"].role is Role.DUTY_OFFICER
    app.state.users.apply(user_record("zhang", Role.DUTY_OFFICER, new_token(), now=NOW, by="test", revoked=True))
    assert client.post("/users", json={"name": "zhang", "role": "viewer"}).status_code == 503  # revoked: on to the broker


def test_the_last_admin_cannot_be_revoked(admin_api):
    app, client = admin_api
    resp = client.delete("/users/admin")
    assert resp.status_code == 409 and resp.json()["fields"][0]["field"] == "name"
    app.state.users.apply(user_record("admin2", Role.ADMIN, new_token(), now=NOW, by="test"))
    assert client.delete("/users/admin").status_code == 503  # another admin: on to the broker


@pytest.mark.parametrize(("change", "field"), [
    ({"unit_id": "no-such-unit"}, "unit_id"),
    ({"kind": "followup", "followup": {"location": {"street": "火星街道"}}}, "followup.location.street"),
], ids=["unit", "followup-street"])
def test_a_filing_the_plan_does_not_know_is_422_naming_the_field(api, change, field):
    app, client = api
    known(app, "r-filing-1")
    resp = client.post("/incidents/r-filing-1/reports", json={**FILING, **change})
    assert resp.status_code == 422, resp.text
    assert [f["field"] for f in resp.json()["fields"]] == [field]


@pytest.mark.parametrize("unit_id", ["district_emergency_office", "street_zhongcang"], ids=["unit", "street"])
def test_a_filing_by_a_unit_or_street_of_the_plan_goes_on_to_the_broker(api, unit_id):
    app, client = api
    known(app, "r-filing-2")
    plan = load_plan()
    assert unit_id in plan.units or unit_id in {s.id for s in plan.streets.values()}
    assert client.post("/incidents/r-filing-2/reports", json={**FILING, "unit_id": unit_id}).status_code == 503


def test_a_body_that_is_not_json_names_no_field_but_says_where(api):
    _, client = api
    resp = client.post("/incidents", content=b'{"type": ', headers={"content-type": "application/json"})
    assert resp.status_code == 422
    [problem] = resp.json()["fields"]
    assert problem["field"] == "(body)" and "JSON" in problem["message"] and "character" in problem["message"]


@pytest.mark.parametrize("limit", ["0", "-1", "5001"])
def test_a_list_limit_out_of_range_is_422_naming_it(api, limit):
    _, client = api
    resp = client.get(f"/incidents?limit={limit}")
    assert resp.status_code == 422 and resp.json()["fields"][0]["field"] == "query.limit"


def test_a_report_id_too_long_for_the_ids_made_from_it_is_422_naming_it(api):
    _, client = api
    resp = client.post("/incidents", json={**BODY, "report_id": "r" * 101})
    assert resp.status_code == 422 and resp.json()["fields"][0]["field"] == "report_id"
