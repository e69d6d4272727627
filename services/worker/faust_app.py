"""The worker's Faust App, built from the settings object; the bench's bare Faust baseline uses the
same configuration (`faust_config`), so the two cannot drift apart."""

from __future__ import annotations

from typing import Any

import faust
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor

from services.metrics import REGISTRY
from services.settings import Settings
from services.worker.consumer_fetch import set_fetch_max_wait


def faust_config(settings: Settings, *, store: str | None = None) -> dict[str, Any]:
    """Every keyword the worker's App is built with (the app id apart)."""
    return dict(
        broker=[f"kafka://{hp}" for hp in settings.bootstrap.split(",")],
        store=store or settings.worker_store,  # either way the changelog on the broker is the truth
        datadir=str(settings.worker_dir),
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
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
        table_standby_replicas=settings.worker_standby_replicas,  # warm tables for a takeover (issue 22)
    )


def build_app(settings: Settings, *, app_id: str | None = None, store: str | None = None,
              sensors: bool = True, **overrides: Any) -> faust.App:
    """`sensors=False`: no Prometheus monitor (the bench's bare baseline measures Faust alone);
    `overrides`: App keywords that differ from the worker's (the bench's baseline processes need no
    static membership, for one)."""
    app = faust.App(app_id or settings.app_id, **{**faust_config(settings, store=store), **overrides})
    set_fetch_max_wait(app, settings.consumer_fetch_max_wait_ms)
    if sensors:  # Faust's own sensors (consumer, commit, send, rebalance) in the same registry as ours
        app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(REGISTRY, "yingji_faust"))
    return app
