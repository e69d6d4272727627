"""`yingji worker`: one worker process, built by the composition root and run by Faust's Worker."""

from __future__ import annotations

import json
import sys

from faust import Worker as FaustWorker
from prometheus_client import start_http_server

from services import logs
from services.kafka_topics import create_changelog, keyed_partitions
from services.metrics import REGISTRY
from services.settings import Settings
from services.worker.root import TABLE_NAME, build_worker
from services.worker.watchdog import consumer_state


def with_the_clusters_partitions(settings: Settings) -> Settings:
    """The keyed topics' partition count is the cluster's, not the setting's: a deployment created
    with 4 runs on with 4 until it migrates (deploy/MIGRATION.md). The table's changelog is made with
    that count before Faust subscribes."""
    partitions = keyed_partitions(settings.bootstrap) or settings.topic_partitions
    create_changelog(settings.bootstrap, f"{settings.app_id}-{TABLE_NAME}-changelog", partitions=partitions,
                     replication=settings.topic_replication)
    return settings.model_copy(update={"topic_partitions": partitions})


def run_worker(settings: Settings) -> int:
    logs.configure(json=settings.log_json, level=settings.log_level, library_level=settings.library_log_level)
    settings = with_the_clusters_partitions(settings)
    worker = build_worker(settings)
    app = worker.app
    # the worker's own metrics (incidents, breaches, escalations, lag) on loopback, for Prometheus
    start_http_server(settings.worker_web_port, addr="127.0.0.1", registry=REGISTRY)
    settings.worker_dir.mkdir(parents=True, exist_ok=True)  # its table store (rocksdb://)
    worker.gc.watch()

    class YingjiWorker(FaustWorker):
        def _on_sigusr1(self) -> None:
            """`kill -USR1 PID`: mode prints every task's stack; we add the consumer's state."""
            super()._on_sigusr1()
            try:
                line = "consumer_state " + json.dumps(consumer_state(app))
            except Exception as exc:  # noqa: BLE001 - a diagnostic must not take the worker down
                line = f"consumer_state unavailable {exc!r}"
            sys.stderr.write(line + "\n")  # one write: a whole line in a shared log
            sys.stderr.flush()

    YingjiWorker(app, loglevel="warning", redirect_stdouts=False, override_logging=False,
                 quiet=True).execute_from_commandline()
    return 0
