"""What one worker process's agent and timers share: the Worker, built by the composition root
(services/worker/root.py). It knows the worker's parts, never the stages that use them: the stages
import it, it imports none of them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, NoReturn

import faust
import structlog

from playbooks.plan import Plan
from services.clock import Clock
from services.duty.book import DutyBook
from services.ledger_book import CircularBook
from services.plan_book import PlanBook
from services.settings import Settings
from services.worker.gcwatch import GcWatch
from services.worker.outbox import Produce
from services.worker.schedule import DueSchedule
from services.worker.watchdog import Faults, StallWatch

log = structlog.get_logger("yingji", stage="worker")
DUTY_WAIT_S = 10.0  # below the stall watchdog's 30 s: a wait here must not read as a stall
PLAN_WAIT_S = 10.0  # the same for the plan's adoptions


@dataclass
class Worker:
    """Everything one worker process's agent and timers share."""

    settings: Settings
    app: faust.App
    plan: Plan
    clock: Clock
    table: Any  # faust Table: incident id -> services/worker/table_codec.py's bytes
    schedule: DueSchedule
    watch: StallWatch
    faults: Faults
    gc: GcWatch
    produce_override: Produce | None = None
    duty: DutyBook | None = None  # rosters and the duty log; None: notices name no person (a test's choice)
    circulars: CircularBook | None = None  # yingji.ledger.circulars, for the 限期整改 timer; None: no such timer
    # the plan's adoptions, followed from yingji.plan.adoptions: `plan` is switched to each (issue 24 item 3);
    # None: `plan` stays as built (a test's)
    plans: PlanBook | None = None
    agent: Any = None  # the registered `incident_lifecycle` agent
    inbound_topics: frozenset[str] = field(default_factory=frozenset)
    # a fresh process image resuming from the committed offsets (services/worker/restart.py); set by
    # the composition root, so this module knows nothing of the stages that use it
    restart_in_place: Callable[..., Awaitable[NoReturn]] | None = None

    async def produce(self, topic: str, key: bytes | None, value: bytes, partition: int | None = None):
        """One record to the producer; the returned future resolves when the broker acknowledges it."""
        if self.produce_override is not None:
            return await self.produce_override(topic, key, value, partition)
        return await self.app.producer.send(topic, key, value, partition, None, None)

    async def duty_ready(self) -> None:
        """Rosters read to their end before a notice is addressed; a broker slow to answer holds the
        notices back at most DUTY_WAIT_S, then they go out addressed with what is known (and say so)."""
        assert self.duty is not None
        try:
            await asyncio.wait_for(self.duty.caught_up.wait(), DUTY_WAIT_S)
        except asyncio.TimeoutError:
            # once: later batches go on with what is known rather than wait again each time
            log.warning("duty_not_caught_up", waited_s=DUTY_WAIT_S)
            self.duty.caught_up.set()

    def adopt(self, plan: Plan, adoption: object) -> None:  # noqa: ARG002 - PlanBook's listener signature
        """A revision read from the log: records are decided under it from the next batch on (a batch is
        handled under one plan), and the due schedule is rebuilt (stale) with it. The timers read their parts
        off `plan` at each tick (ledger.yaml the 限期整改 timer, duty.yaml the handovers); the duty book, which
        addresses every notice, takes the revision's duty.yaml here."""
        self.plan = plan
        self.schedule.stale = True
        if self.duty is not None:
            self.duty.use(plan.duty)

    async def plans_ready(self) -> None:
        """The adoptions read to their end before a first record is decided, so that a restarted worker
        decides under the plan adopted, not the shipped one; a broker slow to answer holds the agent back at
        most PLAN_WAIT_S, the fold of what was read at most the book's FOLD_WAIT_S, then it goes on under the plan
        it has (and says so) and switches when the book does."""
        assert self.plans is not None
        if (late := await self.plans.wait_ready(PLAN_WAIT_S)) is not None:
            log.warning("plan_not_caught_up", waited_for=late, version=self.plan.version)
            self.plans.ready.set()

    def settled(self) -> bool:
        """Not rebalancing and the table recovered: the timers may trust the table and the assignment."""
        app = self.app
        return not (app.rebalancing or app.tables.recovery.in_recovery or not app.tables.recovery.completed.is_set())
