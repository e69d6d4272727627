"""GET /incidents/{id}/documents/{kind} (issue 23 item 2): the draft as JSON, text and a .docx that
python-docx opens with the same items; a filed written report's text is read for 4.1.5's items before
it is sealed. No broker: the view is fed the records the worker would write; the publisher keeps them."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import docx
import pytest
from fastapi.testclient import TestClient

from playbooks.lifecycle import start
from playbooks.plan import load_plan
from services.intake import accept
from services.settings import Settings
from services.users import new_token, user_record
from services.web.app import create_app
from services.worker.outbox import Outbox
from tests.services.publishers import Kept as Sent
from topics.catalog import INCIDENT_COMMANDS, INCIDENT_EVENTS, INCIDENTS_DECIDED, INCIDENTS_REPORTED
from topics.models import IncidentCommand, Role
from topics.requests import ReportSubmission

NOW = datetime.now(timezone.utc).replace(microsecond=0)
BODY = {"type": "燃气事故", "occurred_at": (NOW - timedelta(minutes=10)).isoformat(), "received_at": NOW.isoformat(),
        "location": {"street": "梨园镇", "address": "某小区3号楼"}, "facts": {"injuries": 2}, "source": "119"}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    sent = Sent()
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("documents"), bootstrap_servers="127.0.0.1:1"),
                     publisher=sent)
    token = new_token()
    app.state.users.apply(user_record("officer", Role.DUTY_OFFICER, token, now=NOW, by="test"))
    client = TestClient(app, headers={"Authorization": f"Bearer {token}"})  # no lifespan: no broker
    return app, client, sent


def decided(app, report_id: str) -> None:
    """As if the API had accepted the report and the worker decided it, read back from the topics."""
    plan = load_plan()
    rec = accept(ReportSubmission.model_validate({**BODY, "report_id": report_id}), plan=plan,
                 sealer=app.state.sealer, now=NOW)
    box = Outbox(produce=None)  # type: ignore[arg-type]  # only its records are read: nothing is sent
    box.add_outcome(start(rec, plan, NOW))
    app.state.view.apply(INCIDENTS_REPORTED.name, rec.model_dump_json().encode())
    for topic, _, value, _ in box.records:
        if topic in (INCIDENTS_DECIDED.name, INCIDENT_EVENTS.name):
            app.state.view.apply(topic, value)


def test_the_draft_as_json_text_and_docx_carry_the_same_items(api):
    app, client, _ = api
    decided(app, "doc-1")
    js = client.get("/incidents/doc-1/documents/written_report")
    assert js.status_code == 200, js.text
    body = js.json()
    assert body["missing"] == ["trend"] and body["unit"] == "区城市管理委"
    assert [i["label"] for i in body["items"]][:7] == ["时间", "地点", "信息来源", "事件性质", "危害程度", "发展趋势", "已采取的措施"]
    txt = client.get("/incidents/doc-1/documents/written_report", params={"format": "txt"})
    assert txt.status_code == 200 and txt.headers["content-type"].startswith("text/plain")
    assert txt.text == body["text"] and "二、地点：梨园镇、某小区3号楼" in txt.text
    d = client.get("/incidents/doc-1/documents/written_report", params={"format": "docx"})
    assert d.status_code == 200 and "attachment" in d.headers["content-disposition"]
    paragraphs = [p.text for p in docx.Document(io.BytesIO(d.content)).paragraphs]
    assert paragraphs[0] == body["title"] and paragraphs[1] == "报送单位：区城市管理委" and paragraphs[2] == "签发人："
    for n, item in enumerate(body["items"]):
        assert f"{'一二三四五六七八九十'[n]}、{item['label']}：{item['text']}" in paragraphs


def test_an_unknown_incident_or_kind_is_refused_naming_the_field(api):
    _, client, _ = api
    r = client.get("/incidents/no-such-1/documents/written_report")
    assert r.status_code == 404 and "incident_id" in r.text
    r = client.get("/incidents/doc-1/documents/phone_report")
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "path.kind", r.text
    r = client.get("/incidents/doc-1/documents/written_report", params={"format": "pdf"})
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "query.format", r.text


def test_a_filed_written_report_is_read_for_its_items_before_sealing(api):
    app, client, sent = api
    decided(app, "doc-2")
    text = client.get("/incidents/doc-2/documents/written_report", params={"format": "txt"}).text
    filing = {"kind": "written_report", "unit_id": "district_urban_management_commission",
              "filed_at": NOW.isoformat(), "filed_by": "值班员甲"}
    assert client.post("/incidents/doc-2/reports", json={**filing, "content": text}).status_code == 202
    filled = text.replace("六、发展趋势：【待补充】", "六、发展趋势：已控制，无扩大可能")
    assert client.post("/incidents/doc-2/reports", json={**filing, "content": filled}).status_code == 202
    assert client.post("/incidents/doc-2/reports", json={**filing, "kind": "phone_report"}).status_code == 202
    bodies = [r.body for t, _, r in sent.records if t == INCIDENT_COMMANDS.name and isinstance(r, IncidentCommand)
              and r.incident_id == "doc-2"]
    assert [b.items_missing for b in bodies] == [["trend"], [], None]  # None: no text to read
    assert all("某小区" not in (b.content_sealed or "") for b in bodies)  # sealed, not plain
