"""`yingji` commands that need the service: run everything locally, the worker alone, submit a report."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="local Kafka (unless YINGJI_BOOTSTRAP_SERVERS is set), worker and API")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("worker", help="the Faust worker alone")
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("topics", help="create the catalog's topics (idempotent)")
    p.set_defaults(func=cmd_topics)
    p = sub.add_parser("report", help="submit a report file (JSON) straight to the reported topic")
    p.add_argument("file", help="report file, '-' for standard input")
    p.set_defaults(func=cmd_report)


def cmd_worker(_: argparse.Namespace) -> int:
    from faust import Worker

    from services import logs
    from services.app import app, settings

    logs.configure(json=settings.log_json, level=settings.log_level)
    worker = Worker(app, loglevel="warning", redirect_stdouts=False, override_logging=False, quiet=True)
    worker.execute_from_commandline()
    return 0


def cmd_topics(_: argparse.Namespace) -> int:
    from services.admin import create_topics
    from services.settings import get_settings

    s = get_settings()
    created = create_topics(s.bootstrap, replication=s.replication_factor)
    print(json.dumps({"created": created}))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer
    from pydantic import ValidationError

    from playbooks.engine import ReportRejected
    from playbooks.plan import load_plan
    from services.cli import EXIT_INVALID, validation_messages
    from services.clock import WallClock
    from services.intake import accept
    from services.privacy import Sealer
    from services.settings import get_settings
    from topics.catalog import INCIDENTS_REPORTED
    from topics.models import ReportSubmission

    s = get_settings()
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    try:
        submission = ReportSubmission.model_validate_json(text)
        record = accept(submission, plan=load_plan(), sealer=Sealer.from_file(s.key_file), now=WallClock().now())
    except ValidationError as exc:
        for message in validation_messages(exc):
            print(f"invalid report: {message}", file=sys.stderr)
        return EXIT_INVALID
    except ReportRejected as exc:
        for problem in exc.problems:
            print(f"invalid report: {problem}", file=sys.stderr)
        return EXIT_INVALID
    producer = KafkaProducer(bootstrap_servers=s.bootstrap, acks="all", retries=5)
    try:
        producer.send(
            INCIDENTS_REPORTED.name, key=record.incident_id.encode(), value=record.model_dump_json().encode()
        ).get(timeout=15)
    finally:
        producer.close()
    print(json.dumps({"incident_id": record.incident_id, "report_id": record.report.report_id, "status": "accepted"}))
    return 0


def cmd_run(_: argparse.Namespace) -> int:
    from services.settings import get_settings
    from services.stack import LocalStack

    s = get_settings()
    stack = LocalStack(s)
    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # Ctrl-C, even when started with SIGINT ignored
    try:
        if not s.bootstrap_servers:
            print(f"starting local Apache Kafka (data in {s.data_dir / 'kafka'}) …", flush=True)
        stack.start_broker()
        stack.start_worker()
        stack.start_api()
        print(f"yingji API:  {s.api_url}", flush=True)
        print(f"  OpenAPI:   {s.api_url}/openapi.json  (docs: {s.api_url}/docs)", flush=True)
        print(f"  metrics:   {s.api_url}/metrics", flush=True)
        print(f"  Kafka:     {s.bootstrap}", flush=True)
        print("Ctrl-C stops the API, the worker and the broker.", flush=True)
        while not stopping:
            if any(p.poll() is not None for p in stack.children()):
                print("a child process exited; stopping everything", file=sys.stderr, flush=True)
                return 1
            time.sleep(0.3)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave children behind
        stack.stop()
        print("stopped.", flush=True)
