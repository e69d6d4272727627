"""`drill run`: a scenario replayed onto the running service at N× real time, then scored from what
the pipeline actually did.

The pure replay (playbooks.drill.replay) says which records happen at which simulated moment — the injects,
and a due check at each moment something falls due. The runner sends exactly those records to the
live topics, paced at N× real time, each marked as a drill and carrying its simulated time; the
worker does all the work as for live incidents. Then the runner collects the drill's events,
decisions and notifications from the service's view and scores them against the expectations.
Drill notifications go to their own topic: no drill ever pages a real unit.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer

from playbooks.drill.evaluation import Evaluation, score, to_markdown
from playbooks.drill.replay import Observed, replay
from playbooks.drill.scenario import Scenario, incident_id
from playbooks.plan import Plan
from playbooks.warning.config import WarningsFile
from services.view import IncidentView
from services.warnings.book import WarningBook, apply_command
from topics.catalog import INCIDENT_COMMANDS, INCIDENTS_REPORTED
from topics.models import IncidentReported
from topics.warnings import WarningCommand

log = structlog.get_logger("yingji", stage="drill")
SETTLE_S = 3.0  # quiet time after the last record before scoring (1 s was too short on a loaded machine)
SETTLE_MAX_S = 60.0
# A command is sent once its incident is decided: the report and its commands travel on two topics,
# and a worker that has just been given their partitions may read the command first (it would be
# dead-lettered, "no incident"). Each record carries its simulated time, so waiting changes no outcome.
DECIDED_WAIT_S = 30.0


@dataclass
class DrillRun:
    run_id: str
    scenario: Scenario
    speed: float
    started_by: str
    planned_id: str | None = None  # the planned drill (7.2.2) it carries out, when named
    status: str = "running"  # running | done | failed
    sent: int = 0
    total: int = 0
    error: str | None = None
    evaluation: Evaluation | None = None
    sim_now: str | None = None
    started_wall: float = field(default_factory=time.time)

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "scenario": self.scenario.id,
            "name": self.scenario.name,
            "speed": self.speed,
            "status": self.status,
            "sent": self.sent,
            "total": self.total,
            "simulated_now": self.sim_now,
            "started_by": self.started_by,
            "error": self.error,
            "evaluation": self.evaluation.model_dump(mode="json") if self.evaluation else None,
            "markdown": to_markdown(self.evaluation) if self.evaluation else None,
        }


def new_run_id() -> str:
    return uuid.uuid4().hex[:8]


def _observed(view: IncidentView, scenario: Scenario, run_id: str) -> Observed:
    records: list = []
    for inj in scenario.injects:
        state = view.incidents.get(incident_id(scenario, inj.incident, run_id))
        if state is None:
            continue
        records += list(state.events.values()) + list(state.decisions) + list(state.notifications.values())
    return Observed.from_records(scenario, records, run=run_id)


async def _decided(view: IncidentView, iid: str) -> None:
    """Until the view holds the incident's decision, at most DECIDED_WAIT_S (then the command goes anyway,
    and a dead letter says why)."""
    deadline = time.monotonic() + DECIDED_WAIT_S
    while time.monotonic() < deadline:
        state = view.incidents.get(iid)
        if state is not None and state.decisions:
            return
        await asyncio.sleep(0.01)


def _count(view: IncidentView, ids: set[str]) -> int:
    return sum(len(s.events) + len(s.notifications) for i, s in view.incidents.items() if i in ids)


async def _warning(cmd: WarningCommand, plan: Plan, producer: AIOKafkaProducer, book: WarningBook | None,
                   config: WarningsFile | None) -> None:
    """A drill's warning step through the same rules and writes as the API's (services/warnings/book.py):
    its events, then its notices on the drill topic (the command is a drill's)."""
    if book is None or config is None:
        raise RuntimeError("this drill injects warnings, and this process keeps no warning book")

    async def send(topic: str, key: str, record, what: str) -> None:  # noqa: ARG001 - the API's Send
        await producer.send_and_wait(topic, key=key.encode(), value=record.model_dump_json().encode())

    async with book.writing:
        result = await apply_command(book, cmd, config, plan, send)
    if result.refused:
        raise ValueError(f"the drill's warning {cmd.warning_id} {cmd.kind} is refused: " + "; ".join(result.refused))


async def run_drill(run: DrillRun, *, plan: Plan, producer: AIOKafkaProducer, view: IncidentView,
                    warnings: WarningBook | None = None, warnings_config: WarningsFile | None = None) -> None:
    scenario = run.scenario
    feed: list = []
    ids = {incident_id(scenario, inj.incident, run.run_id) for inj in scenario.injects if inj.action != "warning"}
    wall0 = time.monotonic()
    try:  # a failure anywhere, the replay included, must end the run as failed, not leave it running
        replay(scenario, plan, run=run.run_id, feed=feed)  # the schedule of moments, not the outcome
        run.total = len(feed)
        for sim_at, rec in feed:
            wait = wall0 + (sim_at - scenario.start).total_seconds() / run.speed - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            run.sim_now = sim_at.isoformat()
            if isinstance(rec, WarningCommand):  # a warning moves as the API moves it: checked, then written
                await _warning(rec, plan, producer, warnings, warnings_config)
                run.sent += 1
                continue
            topic = INCIDENTS_REPORTED if isinstance(rec, IncidentReported) else INCIDENT_COMMANDS
            if topic is INCIDENT_COMMANDS:
                await _decided(view, rec.incident_id)
            stamped = rec.model_copy(update={"sim_now": sim_at})
            await producer.send_and_wait(topic.name, key=rec.incident_id.encode(),
                                         value=stamped.model_dump_json().encode())
            run.sent += 1
        end_wait = wall0 + (scenario.end - scenario.start).total_seconds() / run.speed - time.monotonic()
        if end_wait > 0:
            await asyncio.sleep(end_wait)
        run.sim_now = scenario.end.isoformat()
        # wait until the pipeline has gone quiet for this drill
        last, quiet_since, deadline = -1, time.monotonic(), time.monotonic() + SETTLE_MAX_S
        while time.monotonic() < deadline:
            current = _count(view, ids)
            if current != last:
                last, quiet_since = current, time.monotonic()
            elif time.monotonic() - quiet_since >= SETTLE_S:
                break
            await asyncio.sleep(0.1)
        run.evaluation = score(scenario, _observed(view, scenario, run.run_id))
        run.status = "done"
        log.info("drill_done", run_id=run.run_id, scenario=scenario.id, score=run.evaluation.score)
    except Exception as exc:  # noqa: BLE001 - the controller sees the failure on GET /drills/{id}
        run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"
        log.exception("drill_failed", run_id=run.run_id)
