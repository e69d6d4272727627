"""`yingji delivery`: the delivery stage (issue 19). A channel without its secret is a start-up error
naming the channel and the variable, exit 2."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("delivery", help="the delivery stage alone: notices to people on their channels, acks, the ladder")
    p.set_defaults(func=cmd_delivery)
    p = sub.add_parser("notify", help="messages to people: `notify test PERSON` checks their contacts")
    notify_sub = p.add_subparsers(dest="notify_command", required=True)
    q = notify_sub.add_parser("test", help="a test message to PERSON on every channel they have; their 已阅 verifies them")
    q.add_argument("person", help="the person's id, as the 人员 sheet names them")
    q.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the channels' answers (0: don't)")
    q.set_defaults(func=cmd_notify_test)


def cmd_delivery(_: argparse.Namespace) -> int:
    from services.delivery.channels import MissingSecret
    from services.delivery.main import run_delivery
    from services.settings import get_settings

    try:
        return run_delivery(get_settings())
    except MissingSecret as exc:
        print(f"yingji delivery: {exc}", file=sys.stderr)
        return 2


def cmd_notify_test(args: argparse.Namespace) -> int:
    import json
    import time
    from datetime import datetime, timezone

    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from services.cli.in_force import plan_in_force
    from services.delivery.testmsg import test_notice
    from services.duty.book import read_book
    from services.privacy import Sealer
    from services.settings import get_settings
    from topics.catalog import DELIVERIES, NOTIFICATIONS_REQUESTED

    s = get_settings()
    plan = plan_in_force(s.bootstrap, "notify test")  # its units and duty.yaml, as the running service has them
    book = read_book(s.bootstrap, Sealer.from_file(s.key_file), plan.duty)
    person = book.roster().person(args.person)
    if person is None:
        print(f"yingji notify test: person {args.person!r} is not in the directory (import a 人员 sheet first)",
              file=sys.stderr)
        return 2
    unit = plan.units.get(person.unit_id)
    notice = test_notice(person, unit.name if unit else person.unit_id, datetime.now(timezone.utc), by="terminal")
    producer = KafkaProducer(bootstrap_servers=s.bootstrap, acks="all")
    producer.send(NOTIFICATIONS_REQUESTED.name, key=notice.dedup_key.encode(), value=notice.model_dump_json().encode()).get(10)
    producer.close()
    print(f"test message {notice.dedup_key} to {person.id}: sent to the delivery stage")
    if args.wait <= 0:
        return 0
    consumer = KafkaConsumer(bootstrap_servers=s.bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000)
    tps = [TopicPartition(DELIVERIES.name, p) for p in sorted(consumer.partitions_for_topic(DELIVERIES.name) or [])]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    states: dict[str, str] = {}
    channels: list[str] | None = None
    deadline = time.monotonic() + args.wait
    try:
        while time.monotonic() < deadline:
            for record in consumer:
                body = json.loads(record.value)["body"]
                if body.get("dedup_key") != notice.dedup_key:
                    continue
                if body["record"] == "notice":
                    channels = body["channels"]
                    if not channels:
                        print("no channel: " + "; ".join(body["reasons"]))
                        return 1
                elif body["record"] == "delivery":
                    states[body["channel"]] = body["state"] + (f" ({body['reason']})" if body.get("reason") else "")
            if channels is not None and all(states.get(c, "attempted").split()[0] in ("accepted", "delivered", "failed")
                                            for c in channels) and set(channels) <= set(states):
                break
    finally:
        consumer.close()
    for channel in channels or []:
        print(f"  {channel}: {states.get(channel, 'no answer yet')}")
    if channels is None:
        print("the delivery stage has not taken it yet (is `yingji delivery` running?)")
        return 1
    print("when the person clicks 已阅 in the message, their contacts are marked verified")
    return 0 if all(states.get(c, "").startswith(("accepted", "delivered")) for c in channels) else 1
