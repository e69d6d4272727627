"""What the API answers besides its routes' own work: unreadable bodies, wrong methods, and the
OpenAPI document that lists all of it. No broker here."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from playbooks.plan import load_plan
from services.settings import Settings
from services.users import new_token, user_record
from services.web.app import create_app
from services.web.board import chip_label
from topics.models import ObligationKind, Role

from tests.services.test_auth import NOW


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("answers"), bootstrap_servers="127.0.0.1:1"))
    token = new_token()
    app.state.users.apply(user_record("officer", Role.DUTY_OFFICER, token, now=NOW, by="test"))
    return app, TestClient(app, headers={"Authorization": f"Bearer {token}"})


def test_a_body_that_is_not_utf8_is_422_naming_the_body(api):
    _, client = api
    resp = client.post("/incidents", content=b'{"type": "\xff"}', headers={"content-type": "application/json"})
    assert resp.status_code == 422, resp.text
    assert resp.json()["fields"] == [{"field": "(body)", "message": "the body is not UTF-8 text"}]


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("OPTIONS", "/incidents", "GET, POST"),
    ("PUT", "/incidents", "GET, POST"),
    ("DELETE", "/drills", "GET, POST"),
    ("POST", "/users/zhang", "DELETE"),
])
def test_a_wrong_method_is_405_naming_every_method_of_the_path(api, method, path, allow):
    _, client = api
    resp = client.request(method, path)
    assert resp.status_code == 405 and resp.headers["allow"] == allow


def test_every_signed_in_operation_lists_401_and_403(api):
    app, _ = api
    for path, methods in app.openapi()["paths"].items():
        for method, op in methods.items():
            if op.get("security"):
                assert {"401", "403"} <= set(op["responses"]), (method, path)


def test_the_plans_vocabulary_is_declared_from_the_plan_the_app_was_given(api):
    app, _ = api
    plan = load_plan()
    schemas = app.openapi()["components"]["schemas"]
    types = set(schemas["ReportSubmission"]["properties"]["type"]["enum"])
    assert types == {t.id for t in plan.types.values()} | {t.name for t in plan.types.values()}
    street = schemas["Location"]["properties"]["street"]["anyOf"][0]["enum"]
    assert set(street) == {"", *plan.streets} and len(plan.streets) == 22  # 4.2.2
    assert set(schemas["FileReportRequest"]["properties"]["unit_id"]["enum"]) == {*plan.units, *plan.parties}


# The board's chips name an obligation by the plan's label without its closing note.
@pytest.mark.parametrize(("kind", "chip"), [
    (ObligationKind.PHONE_REPORT, "电话报告"),
    (ObligationKind.WRITTEN_REPORT, "书面报告"),
    (ObligationKind.DETAILED_REPORT, "详细信息报告"),
    (ObligationKind.PUBLIC_RELEASE, "信息发布"),
    (ObligationKind.CITY_REPORT, "向市应急办报告"),
    (ObligationKind.EVALUATION_REPORT, "总结评估报告"),
])
def test_a_board_chip_names_the_obligation_as_the_plan_labels_it_without_its_note(kind, chip):
    [rule] = [o for o in load_plan().obligations if o.kind is kind]
    assert chip_label(rule.label) == chip
