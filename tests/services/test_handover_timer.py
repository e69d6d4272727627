"""The worker's handover timer (services/worker/handover.py) through the composition root: at a
unit's shift change it opens the 交接班 on the duty log; 15 minutes on, unconfirmed, it goes to the
带班领导; run again it sends nothing; the duty gauges say what the roster lacks. No broker: the
producer records, the clock is simulated."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services import metrics
from services.clock import SimulatedClock
from services.settings import Settings
from services.worker import handover
from services.worker.root import build_worker
from tests.services.test_incident_agent import PLAN, Produced, _duty_roster, ready_book
from topics.catalog import DUTY_LOG, NOTIFICATIONS_REQUESTED

SH = ZoneInfo("Asia/Shanghai")
CHANGE = datetime(2026, 11, 23, 8, 30, tzinfo=SH)  # the rotation of _duty_roster changes 值班员 daily at 08:30


def worker_at(tmp_path, now: datetime, produced: Produced):
    settings = Settings(data_dir=tmp_path, app_id="yingji-test", stall_restart_s=0)
    built = build_worker(settings, plan=PLAN, clock=SimulatedClock(start=now, speed=0.0), store="memory://",
                         produce=produced.produce, sensors=False, duty=ready_book(settings, _duty_roster()))
    built.app.loop = asyncio.get_running_loop()
    return built


def sent(produced: Produced, topic: str) -> list[dict]:
    return [json.loads(v) for t, _, v in produced.records if t == topic]


async def test_opened_at_the_change_escalated_after_15_minutes_once(tmp_path):
    produced = Produced()
    worker = worker_at(tmp_path, CHANGE + timedelta(minutes=5), produced)
    await handover.check_handovers(worker)
    [opened] = sent(produced, DUTY_LOG.name)
    assert (opened["kind"], opened["outgoing_id"], opened["incoming_id"]) == ("handover_opened", "li", "zhang")
    assert datetime.fromisoformat(opened["at"]) == CHANGE
    assert sent(produced, NOTIFICATIONS_REQUESTED.name) == []

    worker.clock = SimulatedClock(start=CHANGE + timedelta(minutes=16), speed=0.0)
    await handover.check_handovers(worker)
    escalated = [e for e in sent(produced, DUTY_LOG.name) if e["kind"] == "handover_escalated"]
    [notice] = sent(produced, NOTIFICATIONS_REQUESTED.name)
    assert len(escalated) == 1 and escalated[0]["handover_id"] == opened["handover_id"]
    assert (notice["kind"], notice["role"], notice["on_duty"]["person_id"]) == ("handover", "带班领导", "boss1")
    assert datetime.fromisoformat(notice["requested_at"]) == CHANGE + timedelta(minutes=15)

    before = len(produced.records)
    await handover.check_handovers(worker)  # again: nothing new
    assert len(produced.records) == before


async def test_duty_gauges_count_the_seconds_a_post_stands_empty_in_the_next_30_days(tmp_path):
    from topics.duty import Roster

    full = _duty_roster()
    # the 值班员 rotation stops after five days: from 11-26 08:30 nobody stands the post
    short = [r.model_copy(update={"rrule": "FREQ=DAILY;COUNT=5"}) if r.post == "officer" else r for r in full.rotations]
    settings = Settings(data_dir=tmp_path, app_id="yingji-test", stall_restart_s=0)
    worker = build_worker(settings, plan=PLAN, clock=SimulatedClock(start=CHANGE, speed=0.0), store="memory://",
                          produce=Produced().produce, sensors=False,
                          duty=ready_book(settings, Roster(people=full.people, rotations=short)))
    handover.duty_gauges(worker)
    office = "district_emergency_office"
    empty_from = datetime(2026, 11, 26, 8, 30, tzinfo=SH)
    assert metrics.DUTY_GAP.labels(unit=office)._value.get() == (CHANGE + timedelta(days=30) - empty_from).total_seconds()
    assert metrics.DUTY_VIOLATIONS.labels(unit=office, rule="no_gap")._value.get() == 1
    assert metrics.DUTY_VIOLATIONS.labels(unit=office, rule="no_informal")._value.get() == 0
