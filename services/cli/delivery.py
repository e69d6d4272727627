"""`yingji delivery`: the delivery stage (issue 19). A channel without its secret is a start-up error
naming the channel and the variable, exit 2."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("delivery", help="the delivery stage alone: notices to people on their channels, acks, the ladder")
    p.set_defaults(func=cmd_delivery)


def cmd_delivery(_: argparse.Namespace) -> int:
    from services.delivery.channels import MissingSecret
    from services.delivery.main import run_delivery
    from services.settings import get_settings

    try:
        return run_delivery(get_settings())
    except MissingSecret as exc:
        print(f"yingji delivery: {exc}", file=sys.stderr)
        return 2
