"""The 预警 pages (issue 20 item 5) served in-process, no broker: sign-in and roles (a browser without a
sign-in goes to /login, a viewer sees a 403 page on the form), what each page lays out, and the board's
stream data: the active warnings in the snapshot and a change when one moves (issue 20 item 3)."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from services.web import board
from tests.services.test_duty_api import api  # noqa: F401 - the fixture warn builds on
from tests.services.test_warnings_api import OFFICE, draft, warn  # noqa: F401 - the fixture
from topics.models import Role

HTML = {"Accept": "text/html"}
PAGES = ["/warnings/list", "/warnings/new", "/warnings/w-test-1/page"]


def orange_issued(client) -> None:
    officer, commander = client(Role.DUTY_OFFICER), client(Role.COMMANDER)
    assert officer.post("/warnings", json=draft()).status_code == 201
    for unit, approval in (("district_government", "district_leader"), ("city_emergency_office", "city_office")):
        r = commander.post("/warnings/w-test-1/approvals", json={"unit": unit, "approval": approval, "approver": "张某"})
        assert r.status_code == 200, r.text
    assert officer.post("/warnings/w-test-1/issue", json={"unit": OFFICE}).status_code == 200


@pytest.mark.parametrize("path", PAGES)
def test_a_browser_without_sign_in_goes_to_login_and_an_api_client_gets_401(warn, path):  # noqa: F811
    app, _, _ = warn
    anonymous = TestClient(app, follow_redirects=False)
    r = anonymous.get(path, headers=HTML)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    assert anonymous.get(path).status_code == 401


def test_a_viewer_reads_warnings_but_sees_a_403_page_on_the_form(warn):  # noqa: F811
    _, client, _ = warn
    viewer = client(Role.VIEWER)
    r = viewer.get("/warnings/new", headers=HTML)
    assert r.status_code == 403 and "无权访问" in r.text
    assert viewer.get("/warnings/list", headers=HTML).status_code == 200
    assert "拟制预警" not in viewer.get("/warnings/list", headers=HTML).text  # no link to the form either
    for role in (Role.DUTY_OFFICER, Role.COMMANDER, Role.ADMIN):
        assert client(role).get("/warnings/new", headers=HTML).status_code == 200


def test_the_form_offers_the_issuing_units_the_22_streets_and_the_measures(warn):  # noqa: F811
    app, client, _ = warn
    html = client(Role.DUTY_OFFICER).get("/warnings/new", headers=HTML).text
    for name in ("区应急办", "区气象局", "通州区防汛抗旱应急指挥部", "区生态环境局"):
        assert f">{name}</option>" in html
    assert "中仓街道" in html and html.count('name="content.measures"') == 12
    assert html.count("checked>") == 4  # the base measures of 3.2.5(1) pre-checked
    streets = [u for u in app.state.plan.units.values() if u.kind == "street"]
    assert len(streets) == 22 and all(f'value="{u.id}"' in html for u in streets)
    assert 'value="street_zhongcang">' in html and ">中仓街道</option>" in html
    # a street never issues (3.2.1): not among the units
    unit_select = html.split('id="unit"')[1].split("</select>")[0]
    assert "street_" not in unit_select and "town_" not in unit_select


def test_the_warning_page_the_list_and_the_buttons_by_role(warn):  # noqa: F811
    _, client, _ = warn
    officer, commander, viewer = client(Role.DUTY_OFFICER), client(Role.COMMANDER), client(Role.VIEWER)
    assert officer.post("/warnings", json=draft()).status_code == 201
    page = commander.get("/warnings/w-test-1/page", headers=HTML).text
    for item in ("类别", "预警级别", "起始时间", "可能影响范围", "警示事项", "应采取的措施", "发布单位", "发布时间"):
        assert f"<dt>{item}</dt>" in page
    assert "二级橙色" in page and "中仓街道、宋庄镇" in page and "草案" in page
    assert ">区领导批准</button>" in page and ">市应急办批准</button>" in page and ">发布</button>" in page
    assert ">调整级别</button>" in page and ">解除</button>" not in page  # a draft is not lifted
    officer_page = officer.get("/warnings/w-test-1/page", headers=HTML).text
    assert ">区领导批准</button>" not in officer_page and ">发布</button>" in officer_page
    viewer_page = viewer.get("/warnings/w-test-1/page", headers=HTML).text
    assert "<button" not in viewer_page.split("<main")[1]
    assert 'href="/warnings/w-test-1/cap/1"' in page

    orange_issued_after_draft(client)
    page = officer.get("/warnings/w-test-1/page", headers=HTML).text
    assert "已发布" in page and ">解除</button>" in page and ">发布</button>" not in page
    assert page.count("张某") >= 2 and 'href="/warnings/w-test-1/cap/4"' in page
    assert 'href="/warnings/w-test-1/cap/2"' not in page  # an approval is no CAP message
    listing = viewer.get("/warnings/list", headers=HTML).text
    assert 'href="/warnings/w-test-1/page"' in listing and "wlevel orange" in listing and "暴雨" in listing
    r = viewer.get("/warnings/nope/page", headers=HTML)
    assert r.status_code == 404 and "未找到预警" in r.text


def orange_issued_after_draft(client) -> None:
    commander, officer = client(Role.COMMANDER), client(Role.DUTY_OFFICER)
    for unit, approval in (("district_government", "district_leader"), ("city_emergency_office", "city_office")):
        assert commander.post("/warnings/w-test-1/approvals",
                              json={"unit": unit, "approval": approval, "approver": "张某"}).status_code == 200
    assert officer.post("/warnings/w-test-1/issue", json={"unit": OFFICE}).status_code == 200


def test_the_api_routes_stay_json(warn):  # noqa: F811
    _, client, _ = warn
    officer = client(Role.DUTY_OFFICER)
    assert officer.get("/warnings").headers["content-type"].startswith("application/json")
    assert officer.post("/warnings", json=draft()).status_code == 201
    assert officer.get("/warnings/w-test-1").json()["warning_id"] == "w-test-1"


def test_the_board_stream_carries_the_active_warnings_and_a_change_when_one_moves(warn):  # noqa: F811
    app, client, _ = warn
    view, book, config, plan = app.state.view, app.state.warnings, app.state.plan.warnings, app.state.plan

    def rows():
        return board.warning_rows(book, config, plan)

    async def run():
        queue = view.subscribe()
        orange_issued(client)
        batch = []
        while not queue.empty():
            batch.append(queue.get_nowait())
        view.unsubscribe(queue)
        return batch

    batch = asyncio.run(run())
    assert batch and all(c["incident_id"] is None and c["warning_id"] == "w-test-1" for c in batch)
    snap = board.snapshot(view, warnings=rows)
    [w] = snap["warnings"]
    assert w["level"] == "orange" and w["category"] == "暴雨" and w["area"] == ["中仓街道", "宋庄镇"] and not w["drill"]
    body = board.changes(view, batch, warnings=rows)
    assert body is not None and body["rows"] == [] and body["warnings"][0]["id"] == "w-test-1"
    assert board.changes(view, batch, incident="some-incident", warnings=rows) is None  # an incident's page: no warnings
    r = client(Role.DUTY_OFFICER).post("/warnings/w-test-1/lift", json={"unit": OFFICE, "reason": "结束"})
    assert r.status_code == 200 and rows() == []


def test_the_warning_page_lists_its_tasks_by_kind_with_counts_and_confirmations(warn):  # noqa: F811
    app, client, _ = warn
    officer, viewer = client(Role.DUTY_OFFICER), client(Role.VIEWER)
    assert officer.post("/warnings", json=draft()).status_code == 201
    page = officer.get("/warnings/w-test-1/page", headers=HTML).text
    assert 'id="tasks-empty"' in page and "确认完成" not in page  # a draft owes nothing yet
    orange_issued_after_draft(client)
    tasks = officer.get("/warnings/w-test-1").json()["tasks"]
    by_kind = {k: [t for t in tasks if t["task"]["kind"] == k] for k in ("measure", "publication", "filing")}
    # 橙: every street (22) plus the HQ and the department, 4 base measures each, 2 extra for the streets
    assert len(by_kind["measure"]) == 24 * 4 + 22 * 2 and len(by_kind["publication"]) == 8
    sms = next(t["task"] for t in by_kind["publication"] if t["task"]["what"] == "sms")
    r = officer.post(f"/warnings/w-test-1/tasks/{sms['id']}/confirm", json={"unit": sms["unit_id"]})
    assert r.status_code == 200, r.text

    page = officer.get("/warnings/w-test-1/page", headers=HTML).text
    section = page.split('id="tasks"')[1].split("</section>")[0]
    for label, kind, done in (("措施", "measure", 0), ("发布渠道", "publication", 1), ("备案", "filing", 0)):
        group = section.split(f'<details class="task-group" data-kind="{kind}"')[1]
        assert f"<strong>{label}</strong>" in group
        assert f'已确认 <b class="done">{done}</b> / <b class="total">{len(by_kind[kind])}</b>' in group
    # the measures start folded, the publications and filings open
    assert '<details class="task-group" data-kind="measure">' in section
    assert '<details class="task-group" data-kind="publication" open>' in section
    assert '<details class="task-group" data-kind="filing" open>' in section
    assert section.count('class="task-confirm"') == len(tasks) - 1
    sms_row = section.split(f'data-task="{sms["id"]}"')[1].split("</tr>")[0]
    assert "<td>区应急办</td>" in sms_row and "手机短信" in sms_row and "3.2.8" in sms_row
    assert 'title="2026-12-07 08:40:00">已确认 08:40（' in sms_row and "确认完成" not in sms_row
    assert "<td>中仓街道</td>" in section  # the units by their names
    # a confirmation is no step of the history: the 历程 stays short
    history = page.split('id="history"')[1].split("</table>")[0]
    assert history.count("<tr data-seq") == 4

    viewer_page = viewer.get("/warnings/w-test-1/page", headers=HTML).text
    assert "<button" not in viewer_page.split("<main")[1]
    assert "已确认 08:40" in viewer_page and "待确认" in viewer_page
