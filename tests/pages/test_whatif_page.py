"""The what-if page in Chromium on the local Kafka (issue 24 item 1): a commander uploads a revision of
grading.yaml that raises the 较大 threshold of production safety from 3 deaths to 4, picks today, and sees the
gas accident with 3 deaths graded differently (事件等级, with the rule and section), the one with 5 not; the
.xlsx carries the same difference; and a revision that does not load is refused naming file, line and field.
The comparison is services.whatif.run_whatif's, which tests/e2e/test_whatif.py shows writes nothing."""

from __future__ import annotations

import io
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from playbooks.plan import DATA_DIR
from tests.conftest import unique_id
from tests.pages.test_board import shot, sign_in
from tests.waiting import eventually

pytestmark = pytest.mark.e2e
BEIJING = ZoneInfo("Asia/Shanghai")
OLD = "thresholds: {特别重大: 30, 重大: 10, 较大: 3}"


def _raise(api, deaths: int, street: str) -> str:
    now = datetime.now(timezone.utc)
    resp = api.post("/incidents", json={"report_id": unique_id("whatif-page"), "type": "燃气事故",
                                        "occurred_at": (now - timedelta(minutes=5)).isoformat(),
                                        "received_at": now.isoformat(), "location": {"street": street},
                                        "facts": {"deaths": deaths}})
    assert resp.status_code == 202, resp.text
    iid = resp.json()["incident_id"]
    eventually(lambda: api.get(f"/incidents/{iid}").json(), until=lambda b: b.get("status") != "reported",
               timeout=30, every=0.2, what=f"{iid} decided")
    return iid


def test_the_whatif_page_shows_what_a_revision_would_change(service, context, tmp_path):
    from playwright.sync_api import expect

    with service.client("duty_officer") as api:
        three = _raise(api, 3, "梨园镇")
        five = _raise(api, 5, "宋庄镇")
    text = (DATA_DIR / "grading.yaml").read_text(encoding="utf-8")
    assert OLD in text
    revised = tmp_path / "grading.yaml"
    revised.write_text(text.replace(OLD, "thresholds: {特别重大: 30, 重大: 10, 较大: 4}", 1), encoding="utf-8")
    broken = tmp_path / "broken" / "grading.yaml"
    broken.parent.mkdir()
    broken.write_text(text.replace(OLD, "thresholds: {特别重大: 30, 重大: 10, 较大: many}", 1), encoding="utf-8")
    today = datetime.now(timezone.utc).astimezone(BEIJING).strftime("%Y-%m-%d")

    page = context.new_page()
    sign_in(page, service, "commander", "/whatif")
    expect(page.get_by_role("heading", name="预案修订推演")).to_be_visible()
    expect(page.locator("nav a", has_text="预案修订推演")).to_be_visible()
    with service.client("commander") as api:  # the version in force, as GET /plan says, marked in the record
        version = api.get("/plan").json()["version"]
    expect(page.locator("#w-adoptions tr.in-force")).to_have_count(1)
    expect(page.locator("#plan-version")).to_have_text(version)
    page.locator("#w-from").fill(today)
    page.locator("#w-to").fill(today)

    page.locator("#w-files").set_input_files(str(broken))
    page.get_by_role("button", name="推演").click()
    expect(page.locator("#w-error")).to_contain_text("grading.yaml, line")
    expect(page.locator("#w-error")).to_contain_text("thresholds.较大")

    page.locator("#w-files").set_input_files(str(revised))
    page.get_by_role("button", name="推演").click()
    expect(page.locator("#w-status")).to_have_text("推演完成", timeout=120_000)
    expect(page.locator("#w-error")).to_be_hidden()
    graded = page.locator(f"#w-incidents tr[data-incident='{three}'][data-aspect='grade']")
    expect(graded).to_have_count(1)
    expect(graded).to_contain_text("较大")
    expect(graded).to_contain_text("一般")
    expect(page.locator(f"#w-incidents tr[data-incident='{five}'][data-aspect='grade']")).to_have_count(0)
    expect(page.locator("#w-headline")).to_contain_text("上传：grading.yaml")
    # what the revision is, beside what it did: the one threshold, its source, before and after (playbooks.plan_diff)
    changed = page.locator("#w-changes tbody tr")
    expect(changed).to_have_count(1)
    expect(changed).to_have_attribute("data-path", "families.production_safety.criteria[deaths_incl_missing].thresholds.较大")
    expect(changed.locator("td")).to_have_text(["grading.yaml", "families.production_safety.criteria[deaths_incl_missing]"
                                                ".thresholds.较大", "修改", re.compile("国务院令第493号"), "3", "4"])
    shot(page, "whatif", full_page=True)

    with page.expect_download() as got:
        page.get_by_role("button", name="导出 .xlsx").click()
    book = openpyxl.load_workbook(io.BytesIO(got.value.path().read_bytes()))
    cells = [" ".join(str(c) for c in row if c is not None) for ws in book.worksheets for row in ws.iter_rows(values_only=True)]
    assert any(three in c and "较大" in c and "一般" in c for c in cells), [c for c in cells if three in c]
    assert not any(five in c for c in cells if "事件等级" in c)



def test_the_plan_office_adopts_a_revision_from_the_page_and_rolls_back(service, context, tmp_path):
    """Signed in as the plan office (admin): the revision compared, 采纳此修订 with a reason and a confirmation;
    the history shows it 生效中 and GET /plan has it in force; 回退到此版本 on the shipped plan's row goes back."""
    from playwright.sync_api import expect

    with service.client("admin") as api:
        before = api.get("/plan").json()
    shipped = before["shipped_version"]
    text = (DATA_DIR / "grading.yaml").read_text(encoding="utf-8")
    revised = tmp_path / "grading.yaml"
    revised.write_text(text.replace(OLD, "thresholds: {特别重大: 30, 重大: 10, 较大: 4}", 1), encoding="utf-8")
    today = datetime.now(timezone.utc).astimezone(BEIJING).strftime("%Y-%m-%d")

    page = context.new_page()
    sign_in(page, service, "admin", "/whatif")
    try:
        expect(page.locator("#w-adopt")).to_be_hidden()  # nothing compared yet: nothing to adopt
        page.locator("#w-from").fill(today)
        page.locator("#w-to").fill(today)
        page.locator("#w-files").set_input_files(str(revised))
        page.get_by_role("button", name="推演").click()
        expect(page.locator("#w-status")).to_have_text("推演完成", timeout=120_000)
        expect(page.locator("#w-adopt")).to_be_visible()
        version = page.locator("#w-adopt-version").inner_text()
        assert version and version != before["version"]
        expect(page.locator("#w-adopt-replaces")).to_have_text(before["version"])

        page.locator("#w-adopt-days").fill("1")
        page.get_by_role("button", name="采纳此修订").click()  # no reason: not sent
        expect(page.locator("#w-confirm")).not_to_be_visible()
        assert page.locator("#w-reason").evaluate("e => e.validity.valueMissing")  # the browser asks for it
        page.get_by_label("原因（7.1.5 修订依据）").fill("较大事故死亡人数阈值调整（页面采纳试行）")
        page.get_by_role("button", name="采纳此修订").click()
        expect(page.locator("#w-confirm")).to_be_visible()
        expect(page.locator("#w-confirm-text")).to_contain_text(version)
        page.locator("#w-confirm-ok").click()
        expect(page.locator("#w-status")).to_have_text(f"采纳完成：版本 {version} 生效中", timeout=120_000)
        row = page.locator("#w-adoptions tr.in-force")
        expect(row).to_have_count(1)
        expect(row).to_have_attribute("data-version", version)
        expect(row).to_contain_text("生效中")
        expect(row).to_contain_text("页面采纳试行")
        expect(row.locator("td.changes summary")).to_have_text("1 项")  # what it changed, kept with it
        row.locator("td.changes summary").click()
        expect(row.locator("td.changes li")).to_have_text(
            ["grading.yaml families.production_safety.criteria[deaths_incl_missing].thresholds.较大：3 → 4"])
        expect(page.locator("#plan-version")).to_have_text(version)
        with service.client("viewer") as api:
            plan = api.get("/plan").json()
        assert plan["version"] == version
        mine = next(h for h in plan["history"] if h["id"] == plan["adoption"])
        assert mine["reason"] == "较大事故死亡人数阈值调整（页面采纳试行）" and mine["previous_version"] == before["version"]
        assert mine["whatif"] is not None and mine["whatif"]["plan_in_force"] == before["version"]
        shot(page, "whatif-adopted", full_page=True)

        page.locator("#w-adoptions tr.shipped button.rollback").click()  # back to the shipped plan
        expect(page.locator("#w-confirm-text")).to_contain_text(shipped)
        page.locator("#w-confirm-ok").click()  # no reason: the dialog stays and says so
        expect(page.locator("#w-confirm-error")).to_have_text("请填写原因")
        page.locator("#w-confirm-reason").fill("试行结束，恢复原预案")
        page.locator("#w-confirm-ok").click()
        expect(page.locator("#w-status")).to_have_text(f"回退完成：版本 {shipped} 生效中", timeout=60_000)
        expect(page.locator("#plan-version")).to_have_text(shipped)
        expect(page.locator(f"#w-adoptions tr[data-version='{version}'][data-status='superseded']")).to_have_count(1)
        back = page.locator(f"#w-adoptions tr[data-version='{shipped}'][data-status='in_force'] td.changes summary")
        expect(back.first).to_have_text("1 项")  # the rollback changes it back
        # the what-if was over the plan in force before the adoption: not offered again over another (its files
        # would make another version, never compared): asked again first
        expect(page.locator("#w-adopt")).to_be_hidden()
        with service.client("viewer") as api:
            assert api.get("/plan").json()["version"] == shipped
    finally:
        restore_plan(service, before["version"])


def restore_plan(service, version: str) -> None:
    """The session's service is shared: the plan a test found, put back if it adopted another."""
    with service.client("admin") as api:
        now = api.get("/plan").json()
        if now["version"] != version:
            api.post("/plan/rollbacks", json={"version": version, "reason": "the test's plan restored",
                                              "previous_version": now["version"]})


def test_a_revision_tried_on_a_drill_scenario_from_the_page(service, context, tmp_path):
    """7.2.1 验证性演练 in Chromium: a 5-minute phone report tried on the busy night (no dates asked): the scenario's
    incidents compared, and its expectations: the 按时 phone reports of the night now 迟报, marked ✘."""
    from playwright.sync_api import expect

    text = (DATA_DIR / "obligations.yaml").read_text(encoding="utf-8")
    old = "due_after_minutes: 10\n    remind_before_minutes: 5\n"
    assert old in text
    revised = tmp_path / "obligations.yaml"
    revised.write_text(text.replace(old, "due_after_minutes: 5\n    remind_before_minutes: 2\n", 1), encoding="utf-8")
    page = context.new_page()
    sign_in(page, service, "commander", "/whatif")
    page.locator("#w-files").set_input_files(str(revised))
    page.locator("#w-scenario").select_option("busy-night")
    expect(page.locator("#w-from")).to_be_disabled()
    page.get_by_role("button", name="推演").click()
    expect(page.locator("#w-status")).to_have_text("推演完成", timeout=120_000)
    expect(page.locator("#w-headline")).to_contain_text("事件 24 起")
    expect(page.locator("#w-headline")).to_contain_text("演练脚本 busy-night")
    expect(page.locator("#w-scenario-card")).to_be_visible()
    expect(page.locator("#w-scenario-headline")).to_contain_text(re.compile(r"现行预案不符 0 项，修订稿不符 [1-9]\d* 项"))
    late = page.locator("#w-expectations tr[data-what='obligations.phone_report']")
    expect(late.first).to_contain_text("迟报 ✘")
    expect(late.first).to_contain_text("报送义务：电话报告")
    expect(page.locator("#w-changes tbody tr")).to_have_count(2)  # due_after_minutes and remind_before_minutes
    shot(page, "whatif-scenario", full_page=True)
