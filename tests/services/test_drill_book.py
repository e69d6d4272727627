"""The drill runs book (services/drill_book.py): a run is what its latest record on the log says, on every
replica; a stop read from the log stops the run in the process running it, which records it stopped."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

from playbooks.drill.scenario import load_scenario
from playbooks.plan import load_plan
from services.clock import SimulatedClock
from services.drill_book import LOST_AFTER_S, DrillBook, run_recorded, snapshot
from services.drill_runner import DrillRun
from topics.drills import DrillRunEvent, DrillRunStatus, DrillStopRequested

NOW = datetime(2026, 12, 7, 4, tzinfo=timezone.utc)
SCENARIO = Path(__file__).resolve().parents[2] / "playbooks" / "drill" / "scenarios" / "gas-explosion.yaml"


def a_run(run_id: str = "abc123") -> DrillRun:
    return DrillRun(run_id=run_id, scenario=load_scenario(SCENARIO, load_plan()), speed=600.0, started_by="ctl")


def test_a_runs_records_round_trip_and_the_latest_is_its_state():
    run = a_run()
    book = DrillBook(runner="b:8082")  # another replica: it only reads the log
    first = DrillRunEvent.of(snapshot(run, n=1, runner="a:8081", at=NOW))
    assert DrillRunEvent.model_validate_json(first.model_dump_json()) == first
    book.apply_raw("t", first.model_dump_json().encode(), 0)
    run.sent, run.status = 3, "done"
    book.apply(DrillRunEvent.of(snapshot(run, n=2, runner="a:8081", at=NOW)))
    answer = book.answer(book.runs["abc123"], now=NOW)
    assert (answer["status"], answer["sent"], answer["runner"]) == ("done", 3, "a:8081")
    assert all(i.startswith("abc123.") for i in book.runs["abc123"].incidents)


def test_a_stop_on_the_log_stops_the_run_where_it_runs_and_it_is_recorded_stopped():
    async def scenario() -> list[DrillRunEvent]:
        run, book, sent = a_run(), DrillBook(runner="a:8081"), []

        async def send(event: DrillRunEvent) -> None:
            sent.append(event)
            book.apply(event)  # as the log would hand it back

        async def forever() -> None:
            await asyncio.sleep(3600)

        runner = asyncio.create_task(run_recorded(run, forever(), book=book, send=send, clock=SimulatedClock(NOW)))
        await asyncio.sleep(0.05)
        book.apply(DrillRunEvent.of(DrillStopRequested(id="abc123.stop.1", run_id="abc123", by="other", at=NOW)))
        await asyncio.wait_for(runner, 5)
        return sent

    sent = asyncio.run(scenario())
    last = sent[-1].body
    assert last.status is DrillRunStatus.STOPPED and last.stopped_by == "other"


def test_a_run_whose_runner_fell_silent_or_restarted_is_shown_lost():
    run = a_run()
    rec = snapshot(run, n=1, runner="a:8081", at=NOW)
    other, same_name = DrillBook(runner="b:8082"), DrillBook(runner="a:8081")
    assert not other.runner_lost(rec, NOW + timedelta(seconds=LOST_AFTER_S - 1))
    assert other.runner_lost(rec, NOW + timedelta(seconds=LOST_AFTER_S + 1))
    assert same_name.runner_lost(rec, NOW)  # a:8081 started again: no task of it here
    done = rec.model_copy(update={"status": DrillRunStatus.DONE})
    assert not other.runner_lost(done, NOW + timedelta(hours=1))
    other.apply(DrillRunEvent.of(rec))
    assert other.answer(rec, now=NOW + timedelta(minutes=5))["runner_lost"] is True


def test_a_stop_of_a_run_whose_runner_is_lost_is_recorded_at_once_by_the_replica_asked(tmp_path):
    from fastapi.testclient import TestClient

    from services.settings import Settings
    from services.users import new_token, user_record
    from services.web.app import create_app
    from tests.services.publishers import Kept as Sent
    from topics.catalog import DRILL_RUNS
    from topics.models import Role

    sent = Sent()
    app = create_app(Settings(data_dir=tmp_path, bootstrap_servers="127.0.0.1:1"), clock=SimulatedClock(NOW, 0.0),
                     publisher=sent, drills=DrillBook(runner="b:8082"))
    token = new_token()
    app.state.users.apply(user_record("ctl", Role.DRILL_CONTROLLER, token, now=NOW, by="test"))
    lost = snapshot(a_run(), n=1, runner="a:8081", at=NOW - timedelta(seconds=LOST_AFTER_S + 5))
    app.state.drills.apply(DrillRunEvent.of(lost))
    client = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    assert client.get("/drills/abc123").json()["runner_lost"] is True
    resp = client.post("/drills/abc123/stop")
    assert resp.status_code == 202 and resp.json()["status"] == "stopped", resp.text
    bodies = [DrillRunEvent.model_validate_json(r.model_dump_json()).body for t, _, r in sent.records if t == DRILL_RUNS.name]
    assert [b.kind for b in bodies] == ["stop", "run"]
    assert bodies[1].status is DrillRunStatus.STOPPED and bodies[1].stopped_by == "ctl"
