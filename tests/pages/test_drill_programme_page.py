"""The drill programme's register in Chromium on the local Kafka (issue 24 item 4): 区水务局 revised its city water
supply plan (8.3 #16) this year and its planned drill, a scripted drill whose expectation fails, is held but
validates nothing; a drill controller sees the unit's row with the run's score and the 7.2.1 flag, and the
improvement item past its due time marked overdue; plans another drill with the page's form and closes the
item with its button."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest

from tests.pages.test_board import shot, sign_in
from tests.waiting import eventually

pytestmark = pytest.mark.e2e
BEIJING = ZoneInfo("Asia/Shanghai")
WATER = "district_water_bureau"  # 区水务局: drafts 8.3 #16, 17, 26, 32
SCENARIO = """id: water-main
name: 供水管线爆管（单项）
kind: 单项
organiser: 区水务局
objectives: [检验供水突发事件的接报与通知]
start: 2026-11-22T11:30:00+08:00
duration: "00:20"
injects:
  - {at: "00:00", action: report, incident: pipe, type: 供水突发事件, location: {street: 梨园镇}}
expect:
  pipe:
    grade: 特别重大
    ended: false
"""


def test_the_register_shows_the_score_the_flag_and_the_overdue_item(service, context):
    from playwright.sync_api import expect

    now = datetime.now(timezone.utc)
    year = now.astimezone(BEIJING).year
    with service.client("drill_controller") as api:
        resp = api.post("/drills/programme/revisions", json={"plan_id": "sp_urban_water_supply",
                                                             "revised_at": now.isoformat(), "version": "修订稿"})
        assert resp.status_code == 201, resp.text
        revision = resp.json()
        planned = api.post("/drills/programme/planned", json={"year": year, "unit_id": WATER, "kind": "single",
                                                              "title": "供水管线爆管单项演练", "scenario": "water-main"}).json()
        resp = api.post("/drills", json={"scenario": SCENARIO, "speed": 3600, "planned_id": planned["id"]})
        assert resp.status_code == 202, resp.text
        run_id = resp.json()["run_id"]
        run = eventually(lambda: api.get(f"/drills/{run_id}").json(), until=lambda b: b["status"] != "running",
                         timeout=90, every=0.3, what="the drill to finish")
        assert run["status"] == "done", run
        score = run["evaluation"]["score"]
        assert score is not None and score < 100  # 特别重大 was never its grade
        resp = api.post("/drills/programme/improvements", json={
            "run_id": run_id, "expectation": "pipe/grade", "unit_id": WATER, "owner": "张工",
            "action": "核对供水事件分级标准", "due_at": (now - timedelta(days=1)).isoformat()})
        assert resp.status_code == 201, resp.text
        item = resp.json()

    page = context.new_page()
    path = "/drills/programme?" + urlencode({"year": year, "unit": WATER})
    sign_in(page, service, "drill_controller", path)
    expect(page.get_by_role("heading", name=f"应急演练计划与评估（{year}年）")).to_be_visible()
    row = page.locator(f"#register-table tr[data-unit='{WATER}']")
    expect(row).to_contain_text("区水务局")
    expect(row.locator("td.score")).to_have_text(f"{score:g}")
    expect(row.locator("td.revisions")).to_contain_text("未开展验证性演练")  # its drill validates nothing
    expect(row.locator("td.improvements")).to_contain_text("逾期 1")
    flag = page.locator(f"#flag-table tr[data-rule='validation_missing'][data-ref='{revision['id']}']")
    expect(flag).to_contain_text("7.2.1")
    expect(flag).to_contain_text("通州区城市公共供水突发事件应急预案")
    overdue = page.locator(f"#improvement-table tr[data-item='{item['id']}']")
    expect(overdue).to_have_class(re.compile(r"\boverdue\b"))
    expect(overdue.locator("td.status")).to_have_text("逾期未完成")
    expect(page.locator(f"#flag-table tr[data-rule='improvement_overdue'][data-ref='{item['id']}']")).to_be_visible()
    drill = page.locator(f"#planned-table tr[data-planned='{planned['id']}']")
    expect(drill.locator("td.status")).to_have_text("已实施")
    expect(drill.locator(f"span.run[data-run='{run_id}'] b.score")).to_have_text(f"{score:g}")
    shot(page, "24-drill-programme", full_page=True)

    # the page's form: a validation drill planned for the revised plan; the flag stays until it is held
    form = page.locator("#plan-form")
    form.locator("select[name=unit_id]").select_option(WATER)
    form.locator("select[name=kind]").select_option("comprehensive")
    form.locator("input[name=title]").fill("城市供水预案修订验证性演练")
    form.locator("select[name=validates]").select_option("sp_urban_water_supply")
    form.get_by_role("button", name="列入计划").click()
    added = page.locator("#planned-table tr", has_text="城市供水预案修订验证性演练")
    expect(added.locator("td.status")).to_have_text("已计划")
    expect(row.locator("td.revisions")).to_contain_text("验证性演练已计划，尚未实施")
    expect(flag).to_be_visible()
    # 完成: closed after its due time, so late, and no longer flagged
    page.locator(f"button.close-item[data-item='{item['id']}']").click()
    expect(overdue.locator("td.status")).to_have_text("逾期完成")
    expect(page.locator(f"#flag-table tr[data-rule='improvement_overdue'][data-ref='{item['id']}']")).to_have_count(0)
    with service.client("viewer") as screen:
        body = screen.get(path).json()
    line = next(u for u in body["units"] if u["unit_id"] == WATER)
    assert any(p["title"] == "城市供水预案修订验证性演练" and p["validates"] == "sp_urban_water_supply" and p["kind"] == "comprehensive"
               for p in line["planned"])
    # the filter: 全部单位 asks for every unit (no `unit=` at all), the year kept
    page.locator("#f-unit").select_option("")
    page.get_by_role("button", name="查询").click()
    expect(page).to_have_url(re.compile(rf"/drills/programme\?year={year}$"))
    expect(page.locator("#register-table tr[data-unit='town_liyuan']")).to_contain_text("梨园镇")
    assert page.locator("#register-table tbody tr").count() >= 45  # every unit 7.2.2 expects drills of

