"""`yingji delivery`: the delivery stage's composition root and process (issue 19 item 2). One process,
its own consumer group (settings.delivery_group); its metrics on settings.delivery_web_port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

import httpx
import structlog
from aiokafka import AIOKafkaProducer
from prometheus_client import start_http_server

from playbooks.delivery.channels import CHANNELS_FILE, load_channels
from playbooks.delivery.ladder import LADDER_FILE, load_ladder
from playbooks.plan import load_plan
from services import logs
from services.clock import Clock, WallClock
from services.delivery.channels import build_channels
from services.delivery.compose import Composer
from services.delivery.stage import DeliveryStage
from services.delivery.tokens import key_from_file
from services.duty.book import DutyBook
from services.local.sinks import local_channels
from services.metrics import REGISTRY
from services.privacy import Sealer
from services.settings import Settings

log = structlog.get_logger("yingji", stage="delivery")
DUTY_WAIT_S = 10.0


async def run_stage(settings: Settings, *, stopping: asyncio.Event, clock: Clock | None = None,
                    env: dict[str, str] | None = None) -> None:
    """Build the stage from the settings and run it until `stopping` is set. A channel without its
    secret stops it here, before anything is read (MissingSecret names the channel and the variable)."""
    clock = clock or WallClock()
    config = load_channels(settings.channels_file or CHANNELS_FILE)
    if settings.local_sinks:  # `yingji run`: mail to this machine goes to the local SMTP sink's port
        config = local_channels(config, settings)
    plan = load_plan()
    ladder = load_ladder(settings.ladder_file or LADDER_FILE, duty=plan.duty)
    async with httpx.AsyncClient(timeout=10.0) as client:
        senders = build_channels(config, settings.channel_env() if env is None else env, client=client, clock=clock,
                                 only=settings.channel_ids)
        duty = DutyBook(Sealer.from_file(settings.key_file), plan.duty)
        composer = Composer(channels=config, duty=duty, built=set(senders), link_base=settings.link_base,
                            ack_key=key_from_file(settings.ack_key_path))
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=0)
        await producer.start()

        async def produce(topic: str, key: bytes, value: bytes, partition: int) -> None:
            await producer.send_and_wait(topic, value=value, key=key, partition=partition)

        async def duty_ready() -> None:
            try:
                await asyncio.wait_for(duty.caught_up.wait(), DUTY_WAIT_S)
            except TimeoutError:
                log.warning("duty_not_caught_up", waited_s=DUTY_WAIT_S)

        follow = asyncio.create_task(duty.follow(settings.bootstrap), name="follow_duty")
        stage = DeliveryStage(bootstrap=settings.bootstrap, group=settings.delivery_group, channels=config,
                              ladder=ladder, senders=senders, composer=composer, clock=clock, produce=produce,
                              duty_ready=duty_ready, instance_id=settings.delivery_instance_id,
                              max_in_flight=settings.delivery_max_in_flight,
                              channel_concurrency=settings.delivery_channel_concurrency)
        log.info("delivery_started", channels=sorted(senders))
        try:
            await stage.run(stopping)
        finally:
            follow.cancel()
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
