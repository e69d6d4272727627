"""What the board's stream computes from the read model (issue 21): which incidents it carries (open, and
ended today by Beijing's day), the trends per Beijing hour, and the cache every board shares."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from starlette.datastructures import QueryParams

from playbooks.lifecycle import check_due, handle, start
from playbooks.plan import load_plan
from services.view import IncidentView
from services.web import board
from services.web.board import TREND_FRESH_S, BoardQuery, TrendCache, board_row, board_snapshot, on_board, shown_row, snapshot, trends
from tests.playbooks.conftest import make_report
from topics.catalog import INCIDENT_EVENTS, INCIDENTS_DECIDED, INCIDENTS_REPORTED
from topics.models import EndRecorded, IncidentCommand, IncidentDecided, IncidentReported

H = timedelta(hours=1)
M = timedelta(minutes=1)
# 2026-12-07 10:30 Beijing: the hours on the board start at 10:00 Beijing, 02:00 UTC
NOW = datetime(2026, 12, 7, 2, 30, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def plan():
    return load_plan()


def feed(view: IncidentView, plan, iid: str, received: datetime, *, facts=None, drill=False, breach_at=None,
         end_at=None, street: str = "梨园镇", type_: str = "gas_accident", address: str = "") -> None:
    """One incident through the pure lifecycle into the view, as the topics would carry it."""
    report = make_report(type_, report_id=iid, occurred_at=(received - M).isoformat(),
                         received_at=received.isoformat(), facts=facts or {}, drill=drill, location={"street": street, "address": address})
    rec = IncidentReported(id=iid, incident_id=iid, report=report, accepted_at=received)
    out = start(rec, plan, received)
    events = list(out.events)
    state = out.state
    if breach_at is not None:
        due = check_due(state, plan, breach_at)
        events += due.events
        state = due.state
    if end_at is not None:
        body = EndRecorded(id=f"end-{iid}", incident_id=iid, authority="district_committee", decided_by="区应急委",
                           ended_at=end_at, recorded_by="指挥员乙")
        events += handle(state, IncidentCommand(id=f"c-{iid}", incident_id=iid, body=body), plan, end_at).events
    view.apply(INCIDENTS_REPORTED.name, rec.model_dump_json().encode())
    for d in out.decisions:
        dec = IncidentDecided(id=f"d-{iid}", incident_id=iid, drill=drill, decision=d, accepted_at=received)
        view.apply(INCIDENTS_DECIDED.name, dec.model_dump_json().encode())
    for e in events:
        view.apply(INCIDENT_EVENTS.name, e.model_dump_json().encode())


def test_trends_count_live_incidents_per_beijing_hour_by_level_and_breaches_by_their_due_hour(plan):
    view = IncidentView()
    feed(view, plan, "a", NOW - 10 * M)  # this hour (10:00 Beijing)
    feed(view, plan, "b", NOW - 2 * H, facts={"deaths": 3})  # 08:xx, 较大: 一级
    feed(view, plan, "c", NOW - 2 * H - 5 * M, breach_at=NOW - 2 * H + 6 * M)  # 08:xx, its phone report missed at 08:31
    feed(view, plan, "old", NOW - 30 * H)  # outside the 24 hours
    feed(view, plan, "drill", NOW - 10 * M, drill=True)  # drills are not the district's trend
    t = trends(view, NOW)
    assert len(t["hours"]) == 24
    assert t["hours"][-1] == "2026-12-07T02:00:00+00:00" and t["hours"][0] == "2026-12-06T03:00:00+00:00"
    levels = {lv: sum(v) for lv, v in t["incidents"].items()}
    assert sum(levels.values()) == 3
    assert t["incidents"]["一级"][-3] == 1  # b, at 08:xx Beijing: two hours before the last
    assert sum(t["incidents"][lv][-1] for lv in t["incidents"]) == 1  # a
    assert sum(t["breaches"]) >= 1 and t["breaches"][-3] >= 1
    assert t["escalations"][-3] == sum(t["escalations"])  # 督办 steps taken with the breach, at its due hour


def test_the_board_carries_open_incidents_and_those_ended_today_by_beijing_day(plan):
    view = IncidentView()
    feed(view, plan, "open", NOW - 3 * H)
    feed(view, plan, "ended-today", NOW - 3 * H, end_at=NOW - 1 * H)  # ended 09:30 Beijing today
    # ended 2026-12-06 23:50 Beijing: yesterday there, although the same UTC day as NOW
    feed(view, plan, "ended-yesterday", NOW - 20 * H, end_at=datetime(2026, 12, 6, 15, 50, tzinfo=timezone.utc))
    feed(view, plan, "drill-ended", NOW - 3 * H, drill=True, end_at=NOW - 1 * H)
    carried = {iid for iid, st in view.incidents.items() if on_board(st, NOW)}
    assert carried == {"open", "ended-today"}
    row = board_row(view.incidents["ended-today"])
    assert row["status"] == "ended" and row["ended_at"] == (NOW - 1 * H).isoformat()
    assert row["type_id"] == "gas_accident" and row["street"] == "梨园镇"


def test_the_snapshot_feed_keeps_the_latest_breaches_of_open_incidents(plan):
    view = IncidentView()
    for i in range(70):
        feed(view, plan, f"i{i:02d}", NOW - 3 * H + i * M, breach_at=NOW)
    snap = snapshot(view)
    assert len(snap["rows"]) == 70
    assert len(snap["feed"]) == 60
    assert [f["recorded_at"] for f in snap["feed"]] == sorted(f["recorded_at"] for f in snap["feed"])
    assert all(f["level"] and f["lead_units"] for f in snap["feed"])


def test_the_trend_cache_computes_again_only_when_the_view_changed_or_the_hour_turned(plan):
    view = IncidentView()
    cache = TrendCache(view)
    feed(view, plan, "a", NOW - 10 * M)
    first = cache.get(NOW)
    assert cache.get(NOW + 5 * M) is first  # nothing changed, same hour
    feed(view, plan, "b", NOW - 5 * M)
    second = cache.get(NOW + 5 * M)
    assert second is not first and sum(sum(v) for v in second["incidents"].values()) == 2
    # a storm changes the view many times a second: the trends wait TREND_FRESH_S after their last count
    feed(view, plan, "c", NOW - 4 * M)
    assert cache.get(NOW + 5 * M + timedelta(seconds=TREND_FRESH_S - 1)) is second
    third = cache.get(NOW + 5 * M + timedelta(seconds=TREND_FRESH_S))
    assert third is not second and sum(sum(v) for v in third["incidents"].values()) == 3
    assert cache.get(NOW + 40 * M) is not third  # 11:10 Beijing: a new hour


def test_a_row_is_built_once_per_change_of_its_incident_for_every_board(plan):
    view = IncidentView()
    feed(view, plan, "a", NOW - 3 * H)
    st = view.incidents["a"]
    first = shown_row(st)
    assert shown_row(st) is first and snapshot(view)["rows"][0] is first
    feed(view, plan, "a", NOW - 3 * H, breach_at=NOW)  # the same records again (no change), then the breach
    again = shown_row(st)
    assert again is not first and again["breached"] and not first["breached"]


def test_the_stream_sends_the_snapshot_as_the_same_json_joined_from_each_rows_text(plan):
    import json

    from services.web.board import snapshot_text
    view = IncidentView()
    for i in range(5):
        feed(view, plan, f"s{i}", NOW - (i + 1) * H, breach_at=NOW if i % 2 else None)
    text = snapshot_text(view, trends={"hours": []})
    body, direct = json.loads(text), snapshot(view, trends={"hours": []})
    for key in ("server_time",):
        body.pop(key), direct.pop(key)
    assert body == json.loads(json.dumps(direct)) and len(body["rows"]) == 5
    assert json.loads(snapshot_text(view, "s1"))["rows"][0]["id"] == "s1"


# --- the snapshot as the stream sends it: the first screen first (issue 21 item 6) -------------------


def storm(plan) -> IncidentView:
    """40 incidents: old ones breached (a few 一级), young ones in time, two ended today, three drills."""
    view = IncidentView()
    streets = ["梨园镇", "宋庄镇", "台湖镇"]
    for i in range(40):
        old = i % 3 == 0
        feed(view, plan, f"s{i:02d}", NOW - (3 * H if old else (i + 1) * timedelta(seconds=10)),
             facts={"deaths": 3} if i % 9 == 0 else None, breach_at=NOW if old else None,
             street=streets[i % 3], type_="forest_fire" if i % 4 == 0 else "gas_accident")
    for i in range(2):
        feed(view, plan, f"e{i}", NOW - 3 * H, end_at=NOW - 1 * H)
    for i in range(3):
        feed(view, plan, f"d{i}", NOW - 3 * H, drill=True, breach_at=NOW)
    return view


def sent(events) -> list[tuple[str, dict]]:
    return [(e.event, json.loads(e.data)) for e in events]


def test_the_snapshot_sends_the_first_screen_in_the_pages_order_then_every_other_row(plan, monkeypatch):
    view = storm(plan)
    monkeypatch.setattr(board, "FIRST_ROWS", 10)
    monkeypatch.setattr(board, "CHUNK_ROWS", 12)
    out = sent(board_snapshot(view, BoardQuery(), now=NOW))
    (kind, first), rest = out[0], out[1:]
    assert kind == "snapshot" and len(first["rows"]) == 10 and first["cut"] is True
    assert first["more"] == 45 - 10 and [k for k, _ in rest] == ["rows"] * 3
    assert [len(b["rows"]) for _, b in rest] == [12, 12, 11] and [b["more"] for _, b in rest] == [23, 11, 0]
    ids = [r["id"] for r in first["rows"]] + [r["id"] for _, b in rest for r in b["rows"]]
    assert sorted(ids) == sorted(view.incidents) and len(set(ids)) == len(ids)  # every row once
    # live and open only, overdue first and among them the highest level first (board.js's rank)
    top = first["rows"]
    assert all(not r["drill"] and r["status"] != "ended" and r["breached"] for r in top)
    levels = [r["level"] for r in top]
    assert levels == sorted(levels, key=lambda lv: -board.LEVEL_RANK[lv]) and levels[0] == "一级"
    assert first["feed"] and first["warnings"] == [] and "trends" not in first


@pytest.mark.parametrize(("url", "keep"), [
    ("street=宋庄镇", lambda r: r["street"] == "宋庄镇" and not r["drill"] and r["status"] != "ended"),
    ("street=梨园镇&street=台湖镇&level=一级", lambda r: r["street"] in ("梨园镇", "台湖镇") and r["level"] == "一级" and not r["drill"] and r["status"] != "ended"),
    ("q=S0", lambda r: r["id"].startswith("s0")),
    ("type=森林火灾", lambda r: r["type"] == "森林火灾" and not r["drill"] and r["status"] != "ended"),
    ("state=ended_today", lambda r: r["status"] == "ended"),
    ("state=overdue", lambda r: r["breached"] and not r["drill"]),
    ("view=drill", lambda r: r["drill"]),
    ("view=all&state=overdue", lambda r: r["breached"]),
], ids=lambda v: v if isinstance(v, str) else "")
def test_the_first_event_holds_what_the_pages_filters_keep(plan, url, keep):
    view = storm(plan)
    first = sent(board_snapshot(view, BoardQuery.from_params(QueryParams(url)), now=NOW))[0][1]
    want = {iid for iid, st in view.incidents.items() if keep(shown_row(st))}
    assert want and {r["id"] for r in first["rows"]} == want and first["cut"] is False, url


def test_the_rows_are_made_ahead_of_the_first_board_once_the_view_is_read_back(plan):
    import asyncio

    view = storm(plan)
    view.caught_up.set()
    asyncio.run(board.warm(view, every=7))
    opened = [st for st in view.incidents.values() if st.fold.ended_at is None]
    assert len(opened) == 43 and all(st.shown is not None and st.shown.json is not None and st.shown.facts is not None
                                     for st in opened)


def test_what_orders_and_filters_a_row_is_what_the_row_says(plan):
    """The first event ranks every incident from the read model without building its row (Facts):
    the same figures as the row the page ranks by (board.js makeEntry)."""
    view = storm(plan)
    for st in view.incidents.values():
        f, r = board.shown_facts(st), shown_row(st)
        dues = [datetime.fromisoformat(o["due_at"]).timestamp() for o in r["obligations"]
                if o["status"] in ("open", "missed") and o["due_at"]]
        assert (f.id, f.drill, f.ended, f.breached, f.due, f.received) == (
            r["id"], r["drill"], r["status"] == "ended", r["breached"], min(dues, default=float("inf")),
            datetime.fromisoformat(r["received_at"]).timestamp())
        assert f.level == board.LEVEL_RANK.get(r["level"] or "", 0) and f.grade == r["grade"]
        assert f.needs_approval == r["needs_approval"] and f.clock_at == datetime.fromisoformat(r["clock_at"]).timestamp()
        assert f.values == {"level": [r["level"] or "研判中"], "grade": [r["grade"] or "研判中"],
                            "category": [r["category"] or "研判中"], "type": [r["type"]], "street": [r["street"] or "未明确"],
                            "unit": r["lead_units"] or ["研判中"]}
        assert f.text == " ".join([r["id"], r["type"], r["category"], r["street"] or "", *r["lead_units"], *r["key_area"]]).lower()


def test_an_incidents_feed_events_are_kept_across_changes_that_add_no_event(plan):
    view = storm(plan)
    st = view.incidents["s00"]
    kept = board.shown_feed(st)
    assert kept and all(e.kind.value in board.FEED_KINDS for _, _, e in kept)
    st.rev += 1  # a delivery's change: the row again, the feed as it was
    assert board.shown_feed(st) is kept
    last = kept[-1][2]  # one more 督办 step on the timeline: an event added
    step = last.model_copy(update={"seq": max(st.events) + 1, "id": f"s00.e{max(st.events) + 1}"})
    view.apply(INCIDENT_EVENTS.name, step.model_dump_json().encode())
    again = board.shown_feed(st)
    assert again is not kept and len(again) > len(kept)
