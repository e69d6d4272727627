"""The drill runs book (services/drill_book.py): a run is what its latest record on the log says, on every
replica; a stop read from the log stops the run in the process running it, which records it stopped."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path

from playbooks.drill.scenario import load_scenario
from playbooks.plan import load_plan
from services.clock import SimulatedClock
from services.drill_book import DrillBook, run_recorded, snapshot
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
    answer = book.answer(book.runs["abc123"])
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
