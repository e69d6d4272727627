"""The worker's composition root: settings, clock, plan, Faust app, table, schedule and watchdog wired
in one place, with overrides for tests. Nothing here runs at import time.

    worker = build_worker(get_settings())            # `yingji worker` (services/worker/main.py)
    worker = build_worker(settings, store="memory://", clock=SimulatedClock(...), produce=recorder)  # tests

The agent and the timers are module-level functions of their own files, taking the worker
(services/worker/context.py); they are registered on the app here, each under its stable name.
"""

from __future__ import annotations

from functools import partial

import faust

from playbooks.plan import Plan, load_plan
from services.clock import Clock, WallClock
from services.duty.book import DutyBook
from services.ledger_book import CircularBook
from services.plan_book import PlanBook
from services.privacy import Sealer
from services.settings import Settings
from services.worker import gauges, handover, incidents, rectification, restart, sweep
from services.worker.context import Worker
from services.worker.faust_app import build_app
from services.worker.gcwatch import GcWatch
from services.worker.outbox import Produce
from services.worker.schedule import DueSchedule
from services.worker.watchdog import Faults, StallWatch

RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
TABLE_NAME = "incidents"  # Faust names its changelog <app id>-incidents-changelog


def build_worker(settings: Settings, *, plan: Plan | None = None, clock: Clock | None = None,
                 store: str | None = None, produce: Produce | None = None, sensors: bool = True,
                 duty: DutyBook | None | bool = True, circulars: CircularBook | None | bool = True,
                 plans: PlanBook | None = None) -> Worker:
    """The worker, its agent and timers registered on a new Faust app; nothing started.

    `sensors=False`: Faust's Prometheus sensors left out (they register in the process's one registry,
    so a test that builds several workers in one process leaves them out). `duty`: the duty book the
    notices are addressed from; True builds one followed from the duty topics, None leaves it out.
    `circulars`: the book of 通报 the 限期整改 timer chases from; True builds one followed from
    yingji.ledger.circulars, None leaves the timer out. `plan`: decided under, fixed (a test's); without it,
    `plans` (built when not given: the shipped plan, then each revision adopted on yingji.plan.adoptions)."""
    app = build_app(settings, store=store, sensors=sensors)
    if plan is None and plans is None:
        plans = PlanBook(load_plan())
    plan = plans.plan if plans is not None else plan
    assert plan is not None
    if duty is True:
        duty = DutyBook(Sealer.from_file(settings.key_file), plan.duty)
    if circulars is True:
        circulars = CircularBook()
    # incident id -> bytes; keyed like the inbound topics, so co-partitioned with them. value_type=bytes
    # makes the changelog raw both ways: recovery hands back the bytes, parsing nothing.
    table = app.Table(TABLE_NAME, key_type=str, value_type=bytes, standby_buffer_size=settings.worker_standby_buffer,
                      schema=faust.Schema(key_type=str, value_type=bytes, key_serializer="json", value_serializer="raw"))
    worker = Worker(
        settings=settings, app=app, plan=plan, clock=clock or WallClock(), table=table,
        schedule=DueSchedule(per_tick=settings.due_checks_per_tick),
        watch=StallWatch(stall_after_s=settings.stall_restart_s),
        faults=Faults(skip_after=settings.fault_skip_after, stall_after=settings.fault_stall_after,
                      armed=settings.worker_restarts == 0),
        gc=GcWatch(), produce_override=produce, duty=duty or None, circulars=circulars or None, plans=plans,
        inbound_topics=frozenset(spec.name for spec in incidents.INBOUND),
    )
    worker.restart_in_place = partial(restart.restart_in_place, worker)
    _register(worker)
    return worker


def _register(worker: Worker) -> None:
    app = worker.app
    inbound = app.topic(*(spec.name for spec in incidents.INBOUND), **RAW)

    async def incident_lifecycle(stream):
        await incidents.incident_lifecycle(worker, stream)

    worker.agent = app.agent(inbound, name="services.worker.incidents.incident_lifecycle")(incident_lifecycle)

    @app.on_partitions_assigned.connect
    async def on_assigned(app_, assigned, **kwargs) -> None:  # noqa: ARG001 - signal signature
        worker.schedule.stale = True
        worker.watch.reassigned()

    async def sweep_due() -> None:
        await sweep.sweep_due(worker)

    async def refresh_gauges() -> None:
        await gauges.refresh_gauges(worker)

    async def stall_watchdog() -> None:
        await restart.stall_watchdog(worker)

    if worker.plans is not None:
        plan_book = worker.plans
        plan_book.listeners.append(worker.adopt)

        async def follow_plans() -> None:
            await plan_book.follow(worker.settings.bootstrap)

        app.task(follow_plans)

    if worker.duty is not None:
        duty_book = worker.duty

        async def follow_duty() -> None:
            await duty_book.follow(worker.settings.bootstrap)

        app.task(follow_duty)

        async def check_handovers() -> None:
            await handover.check_handovers(worker)

        # on the leader only: one worker opens and escalates handovers (their ids make a second one harmless)
        app.timer(interval=handover.HANDOVER_INTERVAL_S, on_leader=True, name="check_handovers")(check_handovers)

        async def refresh_duty_gauges() -> None:
            await handover.refresh_duty_gauges(worker)

        app.timer(interval=handover.DUTY_GAUGES_INTERVAL_S, name="duty_gauges")(refresh_duty_gauges)

    if worker.circulars is not None:
        circular_book = worker.circulars

        async def follow_circulars() -> None:
            await circular_book.follow(worker.settings.bootstrap)

        app.task(follow_circulars)

        async def check_rectifications() -> None:
            await rectification.check_rectifications(worker)

        # on the leader only: one worker reminds and 督办 (the steps' ids make a second one harmless)
        app.timer(interval=rectification.RECTIFICATION_INTERVAL_S, on_leader=True,
                  name="check_rectifications")(check_rectifications)

    app.timer(interval=sweep.SWEEP_INTERVAL_S, name="sweep_due")(sweep_due)
    app.timer(interval=gauges.GAUGES_INTERVAL_S, name="gauges")(refresh_gauges)
    app.timer(interval=restart.WATCH_INTERVAL_S, name="stall_watchdog")(stall_watchdog)
