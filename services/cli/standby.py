"""`yingji standby lag`: what a cut now would lose (deploy/STANDBY.md): the records of every mirrored topic the
command center's cluster has past the standby's end, as MirrorMaker 2 left them at this moment."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("standby", help="the standby site (plan 2.2.2, deploy/STANDBY.md)")
    standby_sub = p.add_subparsers(dest="standby_command", required=True)
    q = standby_sub.add_parser("lag", help="the mirror's lag: records at the primary not yet on the standby, per topic")
    q.add_argument("--primary", required=True, help="the command center's bootstrap servers")
    q.add_argument("--standby", required=True, help="the standby site's bootstrap servers")
    q.add_argument("--json", action="store_true", help="one JSON object: total, per_topic, missing partitions")
    q.set_defaults(func=cmd_standby_lag)


def cmd_standby_lag(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from kafka.errors import KafkaError

    from services.settings import get_settings
    from services.standby import end_offsets, mirror_lag, mirrored_topics

    topics = mirrored_topics(get_settings().app_id)
    try:
        with ThreadPoolExecutor(2) as pool:  # the two ends taken side by side
            primary = pool.submit(end_offsets, args.primary, topics)
            standby = pool.submit(end_offsets, args.standby, topics)
            lag = mirror_lag(primary.result(), standby.result())
    except KafkaError as exc:
        print(f"yingji standby lag: a cluster did not answer: {exc!r}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"total": lag.total, "per_topic": lag.per_topic,
                          "missing": [f"{t}-{p}" for t, p in lag.missing]}))
    else:
        print(f"mirror lag: {lag.line()}")
    return 0
