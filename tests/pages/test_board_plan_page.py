"""The board's header in Chromium on the local Kafka (issue 24 item 3): it names the plan in force (预案版本, and
随服务发布的版本 or when, by whom and why it was adopted); a revision adopted while the board is open shows there
without a reload, with a notice that stays until dismissed; a rollback says 回退. Adopted and rolled back through
the API as the what-if page does it (tests/pages/test_whatif_page.py adopts through that page)."""

from __future__ import annotations

import re
import shutil

import pytest

from playbooks.plan import DATA_DIR, load_plan
from services.web.district_map import grid_version
from tests.conftest import unique_id
from tests.pages.test_board import assert_never_reloaded, shot, sign_in, watch_navigations
from tests.pages.test_whatif_page import OLD, restore_plan
from tests.waiting import eventually

pytestmark = pytest.mark.e2e
CELL = "town_yongledian: {name: 永乐店镇, col: 3, row: 6}"


def in_force(service, adoption_id: str) -> dict:
    """GET /plan once this replica has the adoption in force."""
    with service.client("viewer") as api:
        return eventually(lambda: api.get("/plan").json(), until=lambda p: p["adoption"] == adoption_id,
                          timeout=60, every=0.3, what=f"{adoption_id} in force")


def test_the_boards_header_shows_the_plan_in_force_and_a_revision_adopted_live(service, context, tmp_path):
    from playwright.sync_api import expect

    with service.client("admin") as api:
        before = api.get("/plan").json()
    page = context.new_page()
    sign_in(page, service, "duty_officer")
    try:
        expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=60_000)
        expect(page.locator("#plan-version")).to_have_text(before["version"])
        if before["adoption"] is None:
            expect(page.locator("#plan-detail")).to_have_text("随服务发布的版本")
        else:  # an earlier test of the session adopted (and rolled back): the header says when and by whom
            expect(page.locator("#plan-detail")).to_contain_text("采纳于")
        expect(page.locator("#plan-notice")).to_be_hidden()
        navigations = watch_navigations(page)

        reason = f"较大事故死亡人数阈值调整（大屏试行 {unique_id('r')}）"
        text = (DATA_DIR / "grading.yaml").read_text(encoding="utf-8")
        assert OLD in text
        revised = text.replace(OLD, "thresholds: {特别重大: 30, 重大: 10, 较大: 5}", 1)
        # and 永乐店镇 a row south on the map: the board fetches the map of the revision's grid
        grid = (DATA_DIR / "district_grid.yaml").read_text(encoding="utf-8")
        assert CELL in grid
        moved = grid.replace(CELL, CELL.replace("row: 6", "row: 7"), 1)
        data = tmp_path / "revised"
        shutil.copytree(DATA_DIR, data)
        (data / "district_grid.yaml").write_text(moved, encoding="utf-8")
        new_map = grid_version(load_plan(data))
        expect(page.locator("#map-cells li")).not_to_have_count(0, timeout=30_000)  # the map drawn, as it was
        with service.client("admin") as api, page.expect_request(
                lambda r: f"/board/map.json?v={new_map}" in r.url, timeout=120_000):
            # the what-if over a day runs before the answer: a longer wait
            resp = api.post("/plan/adoptions", files=[("files", ("grading.yaml", revised.encode(), "application/x-yaml")),
                                                      ("files", ("district_grid.yaml", moved.encode(), "application/x-yaml"))],
                            data={"reason": reason, "previous_version": before["version"], "whatif_days": "1"},
                            timeout=180)
            assert resp.status_code == 202, resp.text
        written = resp.json()
        plan = in_force(service, written["id"])
        mine = next(h for h in plan["history"] if h["id"] == written["id"])

        expect(page.locator("#plan-version")).to_have_text(written["version"], timeout=30_000)
        detail = page.locator("#plan-detail")
        expect(detail).to_contain_text(re.compile(r"采纳于 \d\d-\d\d \d\d:\d\d，"))
        expect(detail).to_contain_text(f"，{mine['adopted_by']}，原因：{reason}")  # as GET /plan's history says
        notice = page.locator("#plan-notice")
        expect(notice).to_be_visible()
        expect(notice).to_contain_text(re.compile(rf"预案已修订：版本 {written['version']} 自 \d\d:\d\d 起生效"))
        expect(page.locator("#plan-notice-changes")).to_have_text(  # what it changes, as the adoption keeps it
            "修订内容：grading.yaml families.production_safety.criteria[deaths_incl_missing].thresholds.较大：3 → 5；"
            "district_grid.yaml cells.town_yongledian.row：6 → 7")
        shot(page, "board-plan-adopted")
        page.get_by_role("button", name="知道了").click()
        expect(notice).to_be_hidden()

        with service.client("admin") as api:  # back to the plan found: a rollback, marked so
            resp = api.post("/plan/rollbacks", json={"version": before["version"], "reason": "大屏试行结束",
                                                     "previous_version": written["version"]})
        assert resp.status_code == 202, resp.text
        in_force(service, resp.json()["id"])
        expect(page.locator("#plan-version")).to_have_text(before["version"], timeout=30_000)
        expect(detail.locator(".badge.rollback")).to_be_visible()
        expect(detail).to_contain_text("原因：大屏试行结束")
        expect(notice).to_be_visible()
        expect(notice).to_contain_text(f"预案已回退：版本 {before['version']} 自 ")
        assert_never_reloaded(page, navigations)
    finally:
        restore_plan(service, before["version"])
