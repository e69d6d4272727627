"""The `yingji` command: classify reports, submit them, run the service locally."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from pydantic import ValidationError

from playbooks.engine import ReportRejected, decide
from playbooks.plan import load_plan
from services.cli.messages import EXIT_INVALID, validation_messages
from topics.requests import ReportSubmission



def _documents(text: str) -> Iterator[tuple[int, str]]:
    """A single JSON document, or JSON Lines (one report per non-empty line)."""
    stripped = text.strip()
    try:
        json.loads(stripped)
        yield 1, stripped
        return
    except json.JSONDecodeError:
        pass
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line


def cmd_classify(args: argparse.Namespace) -> int:
    text = Path(args.file).read_text(encoding="utf-8") if args.file and args.file != "-" else sys.stdin.read()
    plan = load_plan()  # offline, no broker: the shipped plan (a revision adopted on the log is not read)
    status = 0
    for line_no, doc in _documents(text):
        where = f"line {line_no}: " if line_no > 1 or "\n" in text.strip() else ""
        try:
            submission = ReportSubmission.model_validate_json(doc)
            report = submission.facts_only(report_id=submission.report_id or f"r-{uuid.uuid4().hex[:16]}")
            decision = decide(report, plan, datetime.now(timezone.utc))
        except ValidationError as exc:
            for message in validation_messages(exc):
                print(f"invalid report: {where}{message}", file=sys.stderr)
            status = EXIT_INVALID
            continue
        except ReportRejected as exc:
            for problem in exc.problems:
                print(f"invalid report: {where}{problem}", file=sys.stderr)
            status = EXIT_INVALID
            continue
        print(json.dumps(decision.model_dump(mode="json"), ensure_ascii=False, indent=None if args.compact else 2))
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yingji", description="通州区突发事件应急响应编排")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("classify", help="print the plan's decision on a report (JSON or JSON Lines)")
    p.add_argument("file", nargs="?", help="report file; standard input when absent or '-'")
    p.add_argument("--compact", action="store_true", help="one line per decision")
    p.set_defaults(func=cmd_classify)

    _add_service_commands(sub)
    return parser


def _add_service_commands(sub: argparse._SubParsersAction) -> None:
    """Commands that need the broker; imported lazily so `classify` stays quick."""
    from services.cli import delivery, drill, duty, plan, service, standby, whatif

    service.register(sub)
    drill.register(sub)
    duty.register(sub)
    delivery.register(sub)
    standby.register(sub)
    whatif.register(sub)
    plan.register(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
