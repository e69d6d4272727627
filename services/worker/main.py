"""`yingji worker`: one worker process, built by the composition root and run by Faust's Worker."""

from __future__ import annotations

import json
import sys

from faust import Worker as FaustWorker
from prometheus_client import start_http_server

from services import logs
from services.metrics import REGISTRY
from services.settings import Settings
from services.worker.root import build_worker
from services.worker.watchdog import consumer_state


def run_worker(settings: Settings) -> int:
    logs.configure(json=settings.log_json, level=settings.log_level, library_level=settings.library_log_level)
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
