"""The only place the Faust App is built, from the settings object; agents import `app` from here."""

from __future__ import annotations

import faust
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor

from playbooks.plan import Plan, load_plan
from services.clock import Clock, WallClock
from services.consumer_fetch import set_fetch_max_wait
from services.metrics import REGISTRY
from services.settings import Settings, get_settings


def create_app(settings: Settings) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{hp}" for hp in settings.bootstrap.split(",")],
        store=settings.worker_store,  # either way the changelog on the broker is the truth
        datadir=str(settings.worker_dir),
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.replication_factor,
        broker_session_timeout=6,
        consumer_group_instance_id=settings.group_instance_id,
        broker_heartbeat_interval=1,
        broker_rebalance_timeout=6,
        producer_acks=-1,
        producer_linger=settings.producer_linger_s,
        consumer_max_fetch_size=settings.consumer_max_fetch_bytes,
        processing_guarantee="at_least_once",
        web_enabled=False,
        worker_redirect_stdouts=False,
        table_standby_replicas=0,
    )
    set_fetch_max_wait(app, settings.consumer_fetch_max_wait_ms)
    # Faust's own sensors (consumer, commit, send, rebalance) in the same registry as ours
    app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(REGISTRY, "yingji_faust"))
    return app


class Runtime:
    """What agents need beside the app: the plan and the clock (swapped for a simulated one in drills)."""

    def __init__(self, plan: Plan, clock: Clock):
        self.plan = plan
        self.clock = clock


settings = get_settings()
app = create_app(settings)
runtime = Runtime(plan=load_plan(), clock=WallClock())

# Agents register themselves on import; the list is explicit.
from services.agents import incidents as _incidents  # noqa: E402,F401
