"""`yingji delivery`: the delivery stage's composition root and process (issue 19 item 2). One process,
its own consumer group (settings.delivery_group); its metrics on settings.delivery_web_port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from functools import partial

import httpx
import structlog
from aiokafka import AIOKafkaProducer
from prometheus_client import start_http_server

from playbooks.delivery.channels import ChannelsFile, load_channels
from playbooks.delivery.ladder import LadderFile, load_ladder
from playbooks.plan import Plan, load_plan
from services import logs
from services.clock import Clock, WallClock
from services.delivery.channels import Channel, MissingSecret, build_channels
from services.delivery.compose import Composer
from services.delivery.stage import DeliveryStage
from services.delivery.tokens import key_from_file
from services.duty.book import DutyBook
from services.local.sinks import local_channels
from services.metrics import REGISTRY
from services.plan_book import PlanBook
from services.privacy import Sealer
from services.settings import Settings
from topics.plan import PlanAdopted

log = structlog.get_logger("yingji", stage="delivery")
DUTY_WAIT_S = 10.0
PLAN_WAIT_S = 10.0  # as the worker's (services/worker/context.py)


def stage_parts(plan: Plan, settings: Settings, *, shipped: str) -> tuple[ChannelsFile, LadderFile]:
    """The channels and the ladder the stage works by under `plan`. A file the settings name
    (YINGJI_CHANNELS_FILE, YINGJI_LADDER_FILE) stands in for the shipped plan's own (version `shipped`), so a
    deployment's start-up choice holds until the office adopts a revision, which brings its own."""
    as_shipped = plan.version == shipped
    channels = load_channels(settings.channels_file) if as_shipped and settings.channels_file else plan.channels
    ladder = load_ladder(settings.ladder_file, duty=plan.duty) if as_shipped and settings.ladder_file else plan.ladder
    if settings.local_sinks:  # `yingji run`: mail to this machine goes to the local SMTP sink's port
        channels = local_channels(channels, settings)
    return channels, ladder


async def ready(duty: DutyBook, plans: PlanBook, *, duty_wait_s: float = DUTY_WAIT_S,
                plan_wait_s: float = PLAN_WAIT_S) -> None:
    """The rosters and the plan's adoptions read to their ends before a first notice is taken: a restarted stage
    sends under the plan adopted, not the shipped one. A broker slow to answer holds it back at most the wait of
    each (the adoptions' fold, once read, at most the book's FOLD_WAIT_S), then it goes on with what it has (and
    says so)."""
    try:
        await asyncio.wait_for(duty.caught_up.wait(), duty_wait_s)
    except TimeoutError:
        log.warning("duty_not_caught_up", waited_s=duty_wait_s)
    if (late := await plans.wait_ready(plan_wait_s)) is not None:
        log.warning("plan_not_caught_up", waited_for=late, version=plans.plan.version)


Build = Callable[[ChannelsFile, set[str]], dict[str, Channel]]  # the senders of these channels, or MissingSecret


def follow_plans(plans: PlanBook, settings: Settings, stage: DeliveryStage, duty: DutyBook, build: Build) -> None:
    """Each revision adopted on the log (issue 24 item 3), as the workers and the API switch to it: its
    channels (routes, retries, and the senders of the channels it sets otherwise, built again), its ladder and
    its duty.yaml (who stands a step's post) from the stage's next tick. What was sent under the plan before
    stays as it was recorded."""

    def adopt(plan: Plan, adoption: PlanAdopted) -> None:
        channels, ladder = stage_parts(plan, settings, shipped=plans.shipped.version)
        senders: dict[str, Channel] = {}
        for cid in sorted(stage.changed_channels(channels)):
            if settings.channel_ids is not None and cid not in settings.channel_ids:
                continue  # not one this deployment sends on (YINGJI_CHANNELS)
            try:  # one at a time: a secret missing for one keeps the others' switch
                senders |= build(channels, {cid})
            except MissingSecret as exc:  # at start it stops the stage; here the running stage goes on without it
                log.error("channel_not_built", channel=cid, version=plan.version, error=str(exc))
        duty.use(plan.duty)
        stage.use(channels, ladder, senders)
        log.info("delivery_plan_switched", version=plan.version, adoption=adoption.id, rebuilt=sorted(senders),
                 steps=len(ladder.steps.value), routes=len(channels.routes))

    plans.listeners.append(adopt)


async def run_stage(settings: Settings, *, stopping: asyncio.Event, clock: Clock | None = None,
                    env: dict[str, str] | None = None, plans: PlanBook | None = None) -> None:
    """Build the stage from the settings and run it until `stopping` is set. A channel without its
    secret stops it here, before anything is read (MissingSecret names the channel and the variable).
    `plans`: the plan in force, followed from yingji.plan.adoptions (built when not given)."""
    clock = clock or WallClock()
    plans = plans or PlanBook(load_plan())
    # built from the shipped plan's channels (or the settings' file), so a secret missing stops the stage before
    # the log is read; a revision read before the first notice is switched to as any later one (follow_plans)
    config, ladder = stage_parts(plans.plan, settings, shipped=plans.shipped.version)
    channel_env = settings.channel_env() if env is None else env
    async with httpx.AsyncClient(timeout=10.0) as client:
        senders = build_channels(config, channel_env, client=client, clock=clock, only=settings.channel_ids)
        duty = DutyBook(Sealer.from_file(settings.key_file), plans.plan.duty)
        composer = Composer(channels=config, duty=duty, built=set(senders), link_base=settings.link_base,
                            ack_key=key_from_file(settings.ack_key_path))
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=0)
        await producer.start()

        async def produce(topic: str, key: bytes, value: bytes, partition: int) -> None:
            await producer.send_and_wait(topic, value=value, key=key, partition=partition)

        stage = DeliveryStage(bootstrap=settings.bootstrap, group=settings.delivery_group, channels=config,
                              ladder=ladder, senders=senders, composer=composer, clock=clock, produce=produce,
                              ready=partial(ready, duty, plans), instance_id=settings.delivery_instance_id,
                              max_in_flight=settings.delivery_max_in_flight,
                              channel_concurrency=settings.delivery_channel_concurrency)
        follow_plans(plans, settings, stage, duty,
                     lambda channels, only: build_channels(channels, channel_env, client=client, clock=clock, only=only))
        follows = [asyncio.create_task(duty.follow(settings.bootstrap), name="follow_duty"),
                   asyncio.create_task(plans.follow(settings.bootstrap), name="follow_plans")]
        log.info("delivery_started", channels=sorted(senders), version=plans.plan.version)
        try:
            await stage.run(stopping)
        finally:
            for follow in follows:
                follow.cancel()
            for follow in follows:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await follow
            await producer.stop()


def dump_tasks() -> None:
    """`kill -USR1 PID`: every asyncio task's stack on stderr, one write (a diagnostic of a stall)."""
    import io
    import sys

    out = io.StringIO()
    for task in asyncio.all_tasks():
        out.write(f"--- task {task.get_name()}\n")
        task.print_stack(file=out)
    sys.stderr.write(out.getvalue())
    sys.stderr.flush()


class CoordinatorWarmup(logging.Filter):
    """aiokafka says ERROR for a group coordinator not yet elected on a broker just started (it retries
    and joins a moment later): kept out of the first minute's log, where it only alarms a newcomer
    running `make run`; after that, every such line shows."""

    NOISE = ("Group Coordinator Request failed", "Marking the coordinator dead")

    def __init__(self, seconds: float = 60.0) -> None:
        super().__init__()
        self.until = time.monotonic() + seconds

    def filter(self, record: logging.LogRecord) -> bool:
        return time.monotonic() > self.until or not str(record.msg).startswith(self.NOISE)


def run_delivery(settings: Settings) -> int:
    logs.configure(json=settings.log_json, level=settings.log_level, library_level=settings.library_log_level)
    logging.getLogger("aiokafka.consumer.group_coordinator").addFilter(CoordinatorWarmup())
    start_http_server(settings.delivery_web_port, addr="127.0.0.1", registry=REGISTRY)

    async def main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
        await run_stage(settings, stopping=stopping)

    asyncio.run(main())
    return 0
