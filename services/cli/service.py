"""`yingji` commands that need the service: run everything locally, the worker alone, topics, users, submit a report."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path



def cmd_migrate_partitions(args: argparse.Namespace) -> int:
    from services.delivery.stage import NOTICE_TOPICS
    from services.migrate import MigrationRefused, migrate_partitions
    from services.settings import get_settings
    from services.worker.incidents import INBOUND
    from topics.catalog import DELIVERIES

    s = get_settings()
    groups = {s.app_id: [spec.name for spec in INBOUND], s.delivery_group: [*NOTICE_TOPICS, DELIVERIES.name]}
    try:
        report = migrate_partitions(s.bootstrap, app_id=s.app_id, groups=groups, to=args.to,
                                    dry_run=args.dry_run, wait_s=args.wait)
    except MigrationRefused as exc:
        print(f"yingji migrate partitions: refused: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.as_json(), ensure_ascii=False))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="local Kafka (unless YINGJI_BOOTSTRAP_SERVERS is set), worker and API")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("worker", help="the Faust worker alone")
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("sinks", help="the local SMTP server (a Maildir) and robot sink alone, until SIGTERM or Ctrl-C")
    p.set_defaults(func=cmd_sinks)
    p = sub.add_parser("topics", help="create the catalog's topics (idempotent)")
    p.set_defaults(func=cmd_topics)
    p = sub.add_parser("migrate", help="migrations of a deployment's topics (deploy/MIGRATION.md)")
    migrate_sub = p.add_subparsers(dest="migrate_command", required=True)
    q = migrate_sub.add_parser("partitions", help="grow the keyed topics (and the worker's table) to more partitions; "
                                                  "the workers, the delivery stage and the API stopped first")
    q.add_argument("--to", type=int, required=True, help="the partition count wanted (the catalog's: 12)")
    q.add_argument("--dry-run", action="store_true", help="say what would move, change nothing")
    q.add_argument("--wait", type=float, default=30, metavar="SECONDS",
                   help="how long the stopped workers' group may take to empty (a static member keeps its place until "
                        "its session times out); default 30")
    q.set_defaults(func=cmd_migrate_partitions)
    p = sub.add_parser("user", help="users and their tokens")
    user_sub = p.add_subparsers(dest="user_command", required=True)
    q = user_sub.add_parser("add", help="add a user; prints the new token once")
    q.add_argument("name")
    q.add_argument("--role", required=True, choices=["duty_officer", "commander", "drill_controller", "viewer", "admin"])
    q.set_defaults(func=cmd_user_add)
    q = user_sub.add_parser("revoke", help="revoke a user's token")
    q.add_argument("name")
    q.set_defaults(func=cmd_user_revoke)
    q = user_sub.add_parser("list", help="users and roles (never tokens)")
    q.set_defaults(func=cmd_user_list)
    p = sub.add_parser("report", help="submit a report file (JSON) straight to the reported topic")
    p.add_argument("file", help="report file, '-' for standard input")
    p.set_defaults(func=cmd_report)


def cmd_worker(_: argparse.Namespace) -> int:
    from services.settings import get_settings
    from services.worker.main import run_worker

    return run_worker(get_settings())


def cmd_sinks(_: argparse.Namespace) -> int:
    from services.local.sinks import run_sinks
    from services.settings import get_settings

    return run_sinks(get_settings())


def cmd_topics(_: argparse.Namespace) -> int:
    from services.kafka_topics import create_topics
    from services.settings import get_settings

    s = get_settings()
    created = create_topics(s.bootstrap, replication=s.topic_replication, partitions=s.topic_partitions)
    print(json.dumps({"created": created}))
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    from services.clock import WallClock
    from services.settings import get_settings
    from services.users import new_token, publish_user, user_record
    from topics.models import Role

    token = new_token()
    publish_user(get_settings().bootstrap, user_record(args.name, Role(args.role), token, now=WallClock().now(), by="cli"))
    print(f"user {args.name} ({args.role}) added. Token (shown once): {token}")
    return 0


def cmd_user_revoke(args: argparse.Namespace) -> int:
    from services.clock import WallClock
    from services.settings import get_settings
    from services.users import new_token, publish_user, read_users, user_record

    bootstrap = get_settings().bootstrap
    old = read_users(bootstrap).get(args.name)
    if old is None:
        print(f"name: no user {args.name!r}", file=sys.stderr)
        return 2
    publish_user(bootstrap, user_record(args.name, old.role, new_token(), now=WallClock().now(), by="cli", revoked=True))
    print(f"user {args.name} revoked")
    return 0


def cmd_user_list(_: argparse.Namespace) -> int:
    from services.settings import get_settings
    from services.users import read_users

    for rec in read_users(get_settings().bootstrap).values():
        print(f"{rec.name}\t{rec.role.value}\t{'revoked' if rec.revoked else 'active'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer
    from pydantic import ValidationError

    from playbooks.engine import ReportRejected
    from services.cli.in_force import plan_in_force
    from services.cli.messages import EXIT_INVALID, validation_messages
    from services.clock import WallClock
    from services.intake import accept
    from services.privacy import Sealer
    from services.settings import get_settings
    from topics.catalog import INCIDENTS_REPORTED
    from topics.requests import ReportSubmission

    s = get_settings()
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    try:
        submission = ReportSubmission.model_validate_json(text)
        # checked against the plan the workers decide under: a type or street a revision adopted is known
        record = accept(submission, plan=plan_in_force(s.bootstrap, "report"), sealer=Sealer.from_file(s.key_file),
                        now=WallClock().now())
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
    from services.clock import WallClock
    from services.settings import get_settings
    from services.local.stack import LocalStack
    from services.users import ensure_admin

    s = get_settings()
    stack = LocalStack(s)
    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # Ctrl-C, even when started with SIGINT ignored
    try:
        if not s.bootstrap_servers and s.kafka_nodes > 1:
            print(f"starting a local Apache Kafka cluster of {s.kafka_nodes} nodes (data in {s.data_dir / 'cluster'}) …",
                  flush=True)
        elif not s.bootstrap_servers:
            print(f"starting local Apache Kafka (data in {s.data_dir / 'kafka'}) …", flush=True)
        stack.start_broker()
        admin_token = ensure_admin(s.bootstrap, now=WallClock().now(), data_dir=s.data_dir)
        if s.local_sinks:
            stack.start_sinks()
        stack.start_workers()
        stack.start_delivery()
        stack.start_api()
        print(f"yingji API:  {s.api_url}", flush=True)
        if stack.apis:
            replicas = ", ".join(str(s.api_replica_port(i)) for i in range(len(stack.apis)))
            print(f"  replicas:  {len(stack.apis)} behind haproxy (127.0.0.1, ports {replicas}; config "
                  f"{s.data_dir / 'haproxy.cfg'}" + (f"; stats http://127.0.0.1:{s.haproxy_stats_port}/stats"
                                                     if s.haproxy_stats_port else "") + ")", flush=True)
        print(f"  OpenAPI:   {s.api_url}/openapi.json  (docs: {s.api_url}/docs)", flush=True)
        print(f"  metrics:   {s.api_url}/metrics", flush=True)
        print(f"  Kafka:     {s.bootstrap}" + (f"  ({s.kafka_nodes} nodes, topics on {s.topic_replication} replicas, "
                                                   "min.insync.replicas 2)" if s.kafka_nodes > 1 else ""), flush=True)
        if admin_token:
            print(f"  first start: user 'admin' created; token (shown once, kept in {s.data_dir / 'admin.token'}):",
                  flush=True)
            print(f"    {admin_token}", flush=True)
            print("    add people: yingji user add NAME --role duty_officer|commander|drill_controller|viewer",
                  flush=True)
            print(f"    sign in: {s.api_url}/login  (or: Authorization: Bearer TOKEN)", flush=True)
        ports = ", ".join(str(s.worker_web_port + i) for i in range(len(stack.workers)))
        print(f"  workers:   {len(stack.workers)} (metrics on 127.0.0.1, ports {ports})", flush=True)
        if stack.sinks is not None:
            from services.local.sinks import mail_dir, sinks_dir

            print(f"  mail:      SMTP 127.0.0.1:{s.sinks_smtp_port} keeps it in {mail_dir(s.data_dir)}  "
                  f"(ls {mail_dir(s.data_dir) / 'new'})", flush=True)
            robots = "the local sink" if stack.uses_local_robots else "yours (YINGJI_WECOM_ROBOT_URL is set)"
            print(f"  robots:    {robots}; the sink keeps what it takes in {sinks_dir(s.data_dir)}/"
                  f"{{wecom,dingtalk,sms}}.jsonl  (http://127.0.0.1:{s.sinks_http_port}/messages?robot=wecom)",
                  flush=True)
        print(f"  delivery:  notices to the people on duty (metrics on 127.0.0.1:{s.delivery_web_port})", flush=True)
        print("Ctrl-C stops the API, the workers, the delivery stage, the sinks and the broker.", flush=True)
        restarts: list[float] = []
        while not stopping:
            if stack.haproxy is not None and stack.haproxy.poll() is not None:
                print("haproxy exited; stopping everything", file=sys.stderr, flush=True)
                return 1
            if not stack.apis and stack.api is not None and stack.api.poll() is not None:
                print("the API exited; stopping everything", file=sys.stderr, flush=True)
                return 1
            for index, replica in enumerate(stack.apis):
                if replica.poll() is not None:  # haproxy serves from the others meanwhile
                    restarts = [t for t in restarts if time.monotonic() - t < 60] + [time.monotonic()]
                    if len(restarts) > 5:
                        print("the API replicas keep exiting; stopping everything", file=sys.stderr, flush=True)
                        return 1
                    print(f"API replica {index} exited ({replica.returncode}); restarting it", file=sys.stderr,
                          flush=True)
                    stack.start_api_replica(index)
            if stack.sinks is not None and stack.sinks.poll() is not None:
                print("the local sinks exited; stopping everything", file=sys.stderr, flush=True)
                return 1
            if stack.delivery is not None and stack.delivery.poll() is not None:
                if stack.delivery.returncode == 2:  # a start-up error (a channel without its secret): said in its log
                    print("the delivery stage could not start (see its message above); stopping everything",
                          file=sys.stderr, flush=True)
                    return 1
                print("the delivery stage exited; starting it again", file=sys.stderr, flush=True)
                stack.start_delivery()
            for index, worker in enumerate(stack.workers):
                if worker.poll() is None:
                    continue
                # e.g. the broker was away while the worker started: restart it, a few times a minute at most
                restarts = [t for t in restarts if time.monotonic() - t < 60] + [time.monotonic()]
                if len(restarts) > 5:
                    print("the workers keep exiting; stopping everything", file=sys.stderr, flush=True)
                    return 1
                print(f"worker {index} exited ({worker.returncode}); restarting it", file=sys.stderr, flush=True)
                time.sleep(2)
                stack.start_worker_at(index)
            time.sleep(0.3)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave children behind
        stack.stop()
        print("stopped.", flush=True)
