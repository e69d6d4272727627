"""GET /board draws its first screen of rows inline (issue 21 item 6: first rows within 1 s at 5,000 open
incidents): the rows the stream's first event would carry for the URL's view, filters and search, in
the same order (one ranking, board.rank_first), drawn as board.js draws them, with no more than the
stream sends. In-process: the app without its lifespan, its read model fed through the pure lifecycle."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from html import unescape

import pytest
from fastapi.testclient import TestClient
from starlette.datastructures import QueryParams

from playbooks.plan import load_plan
from services.settings import Settings
from services.users import new_token, user_record
from services.view import IncidentView
from services.web.app import create_app
from services.web.board import BoardQuery, board_snapshot
from services.web.first_screen import ago_text, clock_text
from tests.services.test_board_trends import feed, sent
from topics.models import Role

H = timedelta(hours=1)
ADDRESS = "通州区某小区3号楼"  # the report's address: on no board row


@pytest.fixture(scope="module")
def board_app(tmp_path_factory):
    """The app on a read model of a stormy street: 宋庄镇 has a 一级 incident overdue, an older 三级 one
    overdue, a young one in time, a drill and one ended today; 梨园镇 a 一级 incident overdue too."""
    plan = load_plan()
    now = datetime.now(timezone.utc)
    view = IncidentView()
    feed(view, plan, "sz-old", now - 3 * H, breach_at=now, street="宋庄镇", address=ADDRESS)
    feed(view, plan, "sz-big", now - 2 * H, facts={"deaths": 3}, breach_at=now, street="宋庄镇")
    feed(view, plan, "sz-young", now - timedelta(seconds=30), street="宋庄镇")
    feed(view, plan, "sz-drill", now - 3 * H, drill=True, breach_at=now, street="宋庄镇")
    feed(view, plan, "sz-ended", now - 3 * H, end_at=now - timedelta(minutes=1), street="宋庄镇")
    feed(view, plan, "lz-big", now - 2 * H, facts={"deaths": 4}, breach_at=now, street="梨园镇")
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("first-screen"), bootstrap_servers="127.0.0.1:1"), view=view)
    tokens = {}
    for role in Role:
        tokens[role] = new_token()
        app.state.users.apply(user_record(f"fs-{role.value}", role, tokens[role], now=now, by="test"))
    return TestClient(app, follow_redirects=False), tokens, view


def page(board_app, url: str, role: Role = Role.VIEWER) -> str:
    client, tokens, _ = board_app
    resp = client.get(url, headers={"Accept": "text/html", "Authorization": f"Bearer {tokens[role]}"})
    assert resp.status_code == 200, resp.text
    return resp.text


def drawn_ids(html: str) -> list[str]:
    tbody = re.search(r'<tbody id="rows">(.*?)</tbody>', html, re.S).group(1)
    return re.findall(r'<tr data-id="([^"]+)" class="inc', tbody)


def inline_data(html: str) -> dict | None:
    found = re.search(r'<script type="application/json" id="first-screen">(.*?)</script>', html, re.S)
    return json.loads(found.group(1)) if found else None


def stream_first(view: IncidentView, query: str) -> list[str]:
    return [r["id"] for r in sent(board_snapshot(view, BoardQuery.from_params(QueryParams(query))))[0][1]["rows"]]


@pytest.mark.parametrize(("query", "want"), [
    ("street=宋庄镇", ["sz-big", "sz-old", "sz-young"]),  # overdue 一级 first, then overdue, then in time
    ("", ["lz-big", "sz-big", "sz-old", "sz-young"]),
    ("view=drill", ["sz-drill"]),
    ("state=ended_today&street=宋庄镇", ["sz-ended"]),
    ("q=SZ-&level=一级", ["sz-big"]),
], ids=lambda v: v if isinstance(v, str) else "")
def test_the_board_page_holds_its_first_screen_in_the_streams_order(board_app, query, want):
    html = page(board_app, f"/board?{query}")
    _, _, view = board_app
    assert drawn_ids(html) == want
    assert stream_first(view, query)[:len(want)] == want  # the stream's first event: the same rows first
    data = inline_data(html)
    assert [r["id"] for r in data["rows"]] == want and data["cut"] is False
    assert data["query"] == BoardQuery.from_params(QueryParams(query)).as_page()


def test_the_inline_rows_are_drawn_as_the_script_draws_them(board_app):
    html = page(board_app, "/board?street=宋庄镇")
    tbody = re.search(r'<tbody id="rows">(.*?)</tbody>', html, re.S).group(1)
    first = tbody.split("</tr>")[0]
    assert 'class="inc live breached"' in first and 'elementtiming="yj-first-row"' in first
    assert '<span class="badge level l1">一级响应</span>' in first and "燃气事故" in first
    # the missed phone report counts up from its due time, with the data the script ticks it from
    chip = re.search(r'<span class="chip missed" data-kind="phone_report"[^>]*data-status="missed" data-due="(\d+)">'
                     r'<span class="lbl">([^<]+)</span><span class="cd">超时未报 \+([^<]+)</span>', first)
    assert chip, first
    assert unescape(chip.group(2)) == "电话报告" and re.fullmatch(r"\d+:\d\d:\d\d", chip.group(3))
    assert '<span class="ago">2小时0分</span>' in first or '<span class="ago">2小时1分</span>' in first


def figures(html: str) -> dict[str, str]:
    return dict(re.findall(r'<(?:span|b) (?:class="n" )?id="((?:sum|count|shown)-[a-z0-9]+)">([^<]*)<', html))


def test_the_figures_are_drawn_with_the_first_screen(board_app):
    # 宋庄镇: three open live incidents, the 一级 one and the older one overdue, the young one due within
    # 10 minutes; 实战 counts every open live incident, 演练 the drill
    got = figures(page(board_app, "/board?street=宋庄镇"))
    assert {k: got[k] for k in ("sum-open", "sum-l1", "sum-breach", "sum-due", "shown-count", "count-live", "count-drill", "count-all")} == {
        "sum-open": "3", "sum-l1": "1", "sum-breach": "2", "sum-due": "1", "shown-count": "3",
        "count-live": "4", "count-drill": "1", "count-all": "5"}
    assert int(got["sum-l1"]) + int(got["sum-l2"]) + int(got["sum-l3"]) == 3
    assert set(figures(page(board_app, "/board?group=street")).values()) == {"…"}  # the page counts them


def test_the_page_draws_nothing_inline_that_only_the_page_can_rank(board_app):
    # grouped, the headers count every row; 上次查看后新增 is the browser's own; a drill's clock ticks there
    for query in ("group=street", "state=new", "view=drill&state=overdue"):
        html = page(board_app, f"/board?{query}")
        assert drawn_ids(html) == [] and inline_data(html) is None, query


def test_a_drill_controller_gets_the_drill_view_inline_and_no_row_carries_the_reports_address(board_app):
    html = page(board_app, "/board", Role.DRILL_CONTROLLER)
    assert drawn_ids(html) == ["sz-drill"] and inline_data(html)["query"]["view"] == "drill"
    for role in (Role.VIEWER, Role.DUTY_OFFICER, Role.COMMANDER):
        assert ADDRESS not in page(board_app, "/board", role)


def test_the_inline_rows_are_those_the_stream_sends_and_no_more(board_app):
    """The JSON beside the rows is the stream's own text of each row (no field the stream leaves out)."""
    _, _, view = board_app
    stream = {r["id"]: r for r in sent(board_snapshot(view, BoardQuery()))[0][1]["rows"]}
    for row in inline_data(page(board_app, "/board"))["rows"]:
        assert row == stream[row["id"]]


def test_the_countdowns_read_as_the_scripts():
    assert [clock_text(s) for s in (0, 59.9, 595, 3723, 2 * 86400 + 3 * 3600 + 4 * 60 + 5)] == [
        "00:00", "00:59", "09:55", "1:02:03", "2天03:04:05"]
    assert [ago_text(s) for s in (30, 12 * 60, 3 * 3600 + 5 * 60, 2 * 86400 + 4 * 3600)] == [
        "不足1分", "12分", "3小时5分", "2天4小时"]
