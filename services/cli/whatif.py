"""`yingji whatif --plan DIR --from ISO --to ISO` (or `--scenario FILE`): had this revision been in force, what
would have differed (issue 24; 7.1.5 修订, 7.2.1 验证性演练). Reads the period's live records from the log (or a
drill scenario's, as if live), never writes to a topic."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from services.cli.messages import EXIT_INVALID

EXIT_BROKER = 1  # the log could not be read


def _aware(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: not an ISO 8601 time") from exc
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give its timezone (e.g. +08:00)")
    return at


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("whatif", help="replay a period's live incidents under a revised plan and print what differs")
    p.add_argument("--plan", required=True, type=Path, help="the revised plan's data directory (as playbooks/data)")
    p.add_argument("--from", dest="start", type=_aware, help="period start, ISO 8601 with timezone")
    p.add_argument("--to", dest="until", type=_aware, help="period end, ISO 8601 with timezone")
    p.add_argument("--scenario", type=Path, help="instead of a period of the log: a drill scenario's incidents, as "
                                                 "if they had been live (7.2.1 验证性演练), e.g. "
                                                 "playbooks/drill/scenarios/busy-night.yaml")
    p.add_argument("--format", choices=("md", "json", "xlsx"), default="md")
    p.add_argument("--out", type=Path, help="write here instead of standard output (needed for xlsx)")
    p.add_argument("--workers", type=int, help="processes sharing the incidents (default: one a core)")
    p.set_defaults(func=cmd_whatif)


def cmd_whatif(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from playbooks.plan import load_plan
    from playbooks.drill.scenario import ScenarioError, load_scenario
    from playbooks.whatif import (
        RevisionRefused,
        check_scenario,
        load_revision,
        scenario_history,
        to_json,
        to_markdown,
    )
    from services.plan_book import in_force, read_adoptions
    from services.settings import get_settings
    from services.whatif import compare_parallel, run_whatif, to_xlsx

    if args.scenario is not None:
        if args.start is not None or args.until is not None:
            print("yingji whatif: --scenario or --from/--to, not both", file=sys.stderr)
            return EXIT_INVALID
    elif args.start is None or args.until is None:
        print("yingji whatif: give --from and --to (a period of the log), or --scenario", file=sys.stderr)
        return EXIT_INVALID
    elif args.until <= args.start:
        print("yingji whatif: --to must be after --from", file=sys.stderr)
        return EXIT_INVALID
    if args.format == "xlsx" and args.out is None:
        print("yingji whatif: --format xlsx needs --out FILE", file=sys.stderr)
        return EXIT_INVALID
    bootstrap = get_settings().bootstrap
    try:
        revised = load_revision(args.plan)  # refused before the log is read
        # compared with the plan in force: the last adopted on the log (issue 24 item 3), else the shipped one
        _, current = in_force(read_adoptions(bootstrap), load_plan())
        if args.scenario is not None:
            # the scenario's records as the plan in force would have them written (its filings, its ends), each
            # incident replayed under both plans: the drill replay's loop, nothing sent anywhere
            scenario = load_scenario(args.scenario, current)
            report = compare_parallel(scenario_history(scenario, current), current, revised,
                                      workers=args.workers or 1,  # a scenario: small
                                      revised_source=f"{args.plan}（演练脚本 {args.scenario.name}）")
            report = report.model_copy(update={"scenario": check_scenario(scenario, current, revised)})
        else:
            report = run_whatif(args.plan, args.start, args.until, bootstrap=bootstrap, in_force=current,
                                workers=args.workers)
    except RevisionRefused as exc:
        for problem in exc.problems:
            print(f"invalid plan: {args.plan}/{problem}", file=sys.stderr)
        return EXIT_INVALID
    except ScenarioError as exc:
        print(f"invalid scenario: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except (KafkaError, TimeoutError) as exc:
        print(f"yingji whatif: the log could not be read: {exc!r}", file=sys.stderr)
        return EXIT_BROKER
    if args.format == "xlsx":
        args.out.write_bytes(to_xlsx(report))
        return 0
    text = to_json(report) + "\n" if args.format == "json" else to_markdown(report)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
