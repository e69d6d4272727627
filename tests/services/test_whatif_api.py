"""POST /whatif's refusals (issue 24): the revision's files, the period and the role, each refused naming
its field before any record is read; a plan that does not load is refused whole, each problem naming its
file, line and field. No broker: nothing here reaches the log (the comparison itself is tested on the
local Kafka, tests/pages/test_whatif_page.py)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient

from playbooks.plan import DATA_DIR
from services.clock import SimulatedClock
from services.settings import Settings
from services.users import new_token, user_record
from services.web.app import create_app
from tests.services.publishers import Kept
from topics.models import Role

NOW = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)
DAY = {"from": "2026-12-07T00:00:00+08:00", "to": "2026-12-08T00:00:00+08:00"}


@pytest.fixture
def client(tmp_path):
    app = create_app(Settings(data_dir=tmp_path, bootstrap_servers="127.0.0.1:1"), clock=SimulatedClock(NOW, 0.0),
                     publisher=Kept())
    tokens = {}
    for role in (Role.COMMANDER, Role.DUTY_OFFICER, Role.ADMIN):
        tokens[role] = new_token()
        app.state.users.apply(user_record(role.value, role, tokens[role], now=NOW, by="test"))
    c = TestClient(app)
    c.tokens = tokens
    return c


def post(client, files, data=DAY, role=Role.COMMANDER):
    return client.post("/whatif", files=[("files", f) for f in files], data=data,
                       headers={"Authorization": f"Bearer {client.tokens[role]}"})


def fields(resp) -> dict[str, str]:
    assert resp.status_code == 422, resp.text
    return {f["field"]: f["message"] for f in resp.json()["fields"]}


GRADING = (DATA_DIR / "grading.yaml").read_bytes()


@pytest.mark.parametrize("files, data, field, says", [
    pytest.param([("notes.yaml", b"a: 1\n", "application/yaml")], DAY, "files.0", "not a file of the plan", id="unknown file"),
    pytest.param([("grading.yaml", GRADING, "application/yaml"), ("grading.yaml", GRADING, "application/yaml")], DAY,
                 "files.1", "uploaded twice", id="the same file twice"),
    pytest.param([("grading.yaml", b"  \n", "application/yaml")], DAY, "files.0", "empty", id="empty file"),
    pytest.param([("grading.yaml", b"\xff\xfe", "application/yaml")], DAY, "files.0", "UTF-8", id="not text"),
    pytest.param([("grading.yaml", GRADING, "application/yaml")], {**DAY, "from": DAY["to"]}, "from", "before to",
                 id="from not before to"),
    pytest.param([("grading.yaml", GRADING, "application/yaml")], {**DAY, "to": "2027-06-01T00:00:00+08:00"}, "to",
                 "92 days", id="longer than a quarter"),
    pytest.param([("grading.yaml", GRADING, "application/yaml")], {**DAY, "from": "2026-12-07T00:00:00"}, "from",
                 "offset", id="no offset"),
    pytest.param([("grading.yaml", GRADING, "application/yaml")], {"from": DAY["from"]}, "to", "or a scenario",
                 id="half a period"),
    pytest.param([("grading.yaml", GRADING, "application/yaml")], {}, "from", "or a scenario", id="no period"),
    pytest.param([("grading.yaml", GRADING, "application/yaml")], {**DAY, "scenario": "busy-night"}, "scenario",
                 "not both", id="a period and a scenario"),
    pytest.param([("grading.yaml", GRADING, "application/yaml")], {"scenario": "no-such-drill"}, "scenario",
                 "busy-night", id="not a shipped scenario"),
])
def test_refusals_name_the_field(client, files, data, field, says):
    got = fields(post(client, files, data))
    assert field in got and says in got[field], got


def test_a_revision_of_the_largest_files_is_read_not_refused_for_its_size(client):
    """units.yaml, incident_types.yaml and command.yaml together are over the API's 64 KB body limit for JSON:
    the upload is read (and here refused for what it says, naming the line), not a 413."""
    files = [(name, (DATA_DIR / name).read_bytes(), "application/yaml") for name in ("incident_types.yaml", "units.yaml",
                                                                                         "obligations.yaml")]
    command = (DATA_DIR / "command.yaml").read_text(encoding="utf-8") + "\nnot_a_field: 1\n"
    resp = post(client, [*files, ("command.yaml", command.encode(), "application/yaml")])
    assert sum(len(f[1]) for f in files) + len(command.encode()) > 64 * 1024
    assert resp.status_code == 422, resp.text[:300]
    assert any(f["message"].startswith("command.yaml, line") for f in resp.json()["fields"]), resp.text[:500]


def test_a_revision_that_does_not_load_is_refused_naming_file_line_and_field(client):
    text = GRADING.decode("utf-8")
    broken = text.replace("thresholds: {特别重大: 30, 重大: 10, 较大: 3}", "thresholds: {特别重大: 30, 重大: 10, 较大: many}", 1)
    assert broken != text
    line = broken.splitlines().index(next(l for l in broken.splitlines() if "较大: many" in l)) + 1
    resp = post(client, [("grading.yaml", broken.encode(), "application/yaml")])
    assert resp.status_code == 422, resp.text
    problems = [f["message"] for f in resp.json()["fields"] if f["field"] == "files"]
    assert problems and any(p.startswith(f"grading.yaml, line {line}:") and "thresholds" in p for p in problems), problems
    assert not any("yingji-whatif-" in p for p in problems), "the server's temporary folder is not shown"


@pytest.mark.parametrize("role, status", [(Role.DUTY_OFFICER, 403), (None, 401)])
def test_only_commanders_and_the_plan_office_ask(client, role, status):
    headers = {"Authorization": f"Bearer {client.tokens[role]}"} if role else {}
    resp = client.post("/whatif", files=[("files", ("grading.yaml", GRADING, "application/yaml"))], data=DAY,
                       headers=headers)
    assert resp.status_code == status, resp.text


def test_the_page_lists_the_plans_files_and_its_version(client):
    resp = client.get("/whatif", headers={"Authorization": f"Bearer {client.tokens[Role.ADMIN]}", "Accept": "text/html"})
    assert resp.status_code == 200, resp.text
    assert "预案修订推演" in resp.text and "incident_types.yaml" in resp.text
    assert client.app.state.plan.version in resp.text
    assert "尚未采用修订稿" in resp.text  # no adoption read: the shipped plan is in force
    assert "button small secondary rollback" not in resp.text  # nothing to go back to


async def test_the_page_lists_the_adoptions_latest_first_the_one_in_force_marked(client):
    from services.plan_book import plan_texts
    from topics.plan import PlanAdopted, WhatIfSummary

    book = client.app.state.plans
    texts = plan_texts(DATA_DIR)
    first = PlanAdopted(id="adopt-1", version=book.shipped.version, files=texts, adopted_by="plan-office",
                        adopted_at=NOW, reason="7.1.5 修订：燃气事故牵头单位调整", previous_version="0123456789ab",
                        whatif=WhatIfSummary(period_from=NOW, period_to=NOW, plan_in_force="x", incidents=12,
                                             differing=3, breaches_before=2, breaches_after=1))
    late = first.model_copy(update={"id": "adopt-2", "reason": "同时另一份修订", "previous_version": "0123456789ab"})
    book.apply(first)
    book.apply(late)  # written against the same version: refused as it is read
    await book.settle()
    resp = client.get("/whatif", headers={"Authorization": f"Bearer {client.tokens[Role.ADMIN]}", "Accept": "text/html"})
    assert resp.status_code == 200, resp.text
    table = resp.text[resp.text.index('id="w-adoptions"'):]
    assert "燃气事故牵头单位调整" in table and "12/3" in table and "生效中" in table and "2026-12-07 10:00" in table
    assert table.index("同时另一份修订") < table.index("燃气事故牵头单位调整")  # the latest first
    assert f"冲突未生效：依据版本 0123456789ab 写成，其时现行为 {book.shipped.version}" in table
    assert table.count('class="in-force"') == 1  # the adoption; the shipped row is not marked while one is


@pytest.mark.parametrize("role, buttons", [(Role.ADMIN, True), (Role.COMMANDER, False)])
def test_only_the_plan_office_sees_the_adopt_and_rollback_controls(client, role, buttons):
    resp = client.get("/whatif", headers={"Authorization": f"Bearer {client.tokens[role]}", "Accept": "text/html"})
    assert resp.status_code == 200, resp.text
    assert ('id="w-adopt-form"' in resp.text) is buttons
    assert 'data-can-adopt="true"' in resp.text if buttons else 'data-can-adopt="false"' in resp.text


def test_a_log_that_cannot_be_read_is_the_documented_503(client, monkeypatch):
    """The answer the OpenAPI document gives for 503 (error, retry_after_s, Retry-After), not FastAPI's {detail}."""
    from kafka.errors import KafkaTimeoutError

    import services.whatif

    def no_broker(*args, **kwargs):
        raise KafkaTimeoutError("no broker")

    monkeypatch.setattr(services.whatif, "run_whatif", no_broker)
    resp = post(client, [("grading.yaml", GRADING + b"\n# a comment\n", "application/yaml")])
    assert resp.status_code == 503, resp.text
    assert set(resp.json()) == {"error", "retry_after_s"} and "KafkaTimeoutError" in resp.json()["error"]
    assert resp.headers["Retry-After"]


def test_a_replica_keeps_the_plan_in_forces_outcomes_between_questions(client, monkeypatch):
    """Two questions about the same period (two revisions): the second replays only the revised side (the plan
    in force's outcomes kept by the replica, under its one-at-a-time lock), and answers as a fresh what-if does."""
    import playbooks.whatif as core
    import services.whatif
    from playbooks.drill.scenario import load_scenario
    from playbooks.plan import load_plan
    from tests.bench.whatif import BUSY_NIGHT

    plan = load_plan()
    night = core.scenario_history(load_scenario(BUSY_NIGHT, plan), plan)
    monkeypatch.setattr(services.whatif, "read_history", lambda *a, **k: night)
    replays: list[str] = []
    real = core.replay_incident

    def counting(records, p, until):
        replays.append(p.version)
        return real(records, p, until)

    monkeypatch.setattr(core, "replay_incident", counting)
    grading = GRADING.decode("utf-8")
    first = post(client, [("grading.yaml", (grading + "\n# 修订一\n").encode(), "application/yaml")])
    assert first.status_code == 200, first.text[:500]
    in_force_first = replays.count(plan.version)
    assert in_force_first == first.json()["totals"]["incidents"] > 0
    replays.clear()
    second_text = grading + "\n# 修订二\n"
    second = post(client, [("grading.yaml", second_text.encode(), "application/yaml")])
    assert second.status_code == 200, second.text[:500]
    assert replays.count(plan.version) == 0  # the plan in force's outcomes were kept
    monkeypatch.setattr(core, "replay_incident", real)
    revised = tmp_revision(second_text)
    fresh = core.what_if(night, plan, revised).model_dump(mode="json", exclude={"revised_source"})
    assert {k: v for k, v in second.json().items() if k != "revised_source"} == fresh


def tmp_revision(grading_text: str):
    import shutil
    import tempfile
    from pathlib import Path

    from playbooks.plan import load_plan

    d = Path(tempfile.mkdtemp()) / "data"
    shutil.copytree(DATA_DIR, d)
    (d / "grading.yaml").write_text(grading_text, encoding="utf-8")
    return load_plan(d)


def test_a_scenario_instead_of_a_period_compares_its_incidents_and_scores_its_expectations(client):
    """7.2.1 验证性演练 from the page: a shipped drill scenario's incidents as if live under both plans (no log read:
    the broker here is unreachable), and the scenario's expectations under each."""
    shorter = (DATA_DIR / "obligations.yaml").read_text(encoding="utf-8").replace(
        "due_after_minutes: 10\n    remind_before_minutes: 5\n", "due_after_minutes: 5\n    remind_before_minutes: 2\n", 1)
    resp = post(client, [("obligations.yaml", shorter.encode(), "application/yaml")], {"scenario": "busy-night"})
    assert resp.status_code == 200, resp.text
    report = resp.json()
    assert report["totals"]["incidents"] == 24 and report["totals"]["differing"] > 0
    assert report["revised_source"] == "上传：obligations.yaml（演练脚本 busy-night）"
    check = report["scenario"]
    assert (check["scenario"], check["failed_before"]) == ("busy-night", 0) and check["failed_after"] > 0
    assert {c["what"] for c in check["changed"]} >= {"obligations.phone_report"}
    md = post(client, [("obligations.yaml", shorter.encode(), "application/yaml")], {"scenario": "busy-night",
                                                                                    "format": "md"})
    assert md.status_code == 200 and "## 演练预期（7.2.1 验证性演练）" in md.text
    assert "busy-night" in md.headers["content-disposition"]
    book = post(client, [("obligations.yaml", shorter.encode(), "application/yaml")], {"scenario": "busy-night",
                                                                                      "format": "xlsx"})
    import io

    import openpyxl

    sheet = openpyxl.load_workbook(io.BytesIO(book.content))["演练预期"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[3][:2] == ("修订稿不符", check["failed_after"])
    header = rows.index(("事件", "预期项目", "预期", "现行预案", "现行符合", "修订稿", "修订稿符合"))
    assert len(rows) - header - 1 == len(check["changed"]) and rows[header + 1][1] == "报送义务：电话报告"


def test_a_revision_that_cannot_decide_the_scenarios_reports_is_answered_not_a_500(client):
    from tests.services.test_revision_validation_cli import UNDECIDABLE

    _, old, new = UNDECIDABLE
    text = (DATA_DIR / "response.yaml").read_text(encoding="utf-8")
    assert old in text
    resp = post(client, [("response.yaml", text.replace(old, new, 1).encode(), "application/yaml")],
                {"scenario": "busy-night"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["totals"]["refused_after"] > 0 and resp.json()["scenario"]["refused_after"]
