"""`yingji drill validate|eval SCENARIO [--plan DIR]`: check a drill scenario, or evaluate it in-process, under
the shipped plan or a revision of it (7.2.1: a plan being revised is validated by a drill).

`eval` needs no broker: the pure engine on the scenario's own simulated clock (playbooks/drill/).
`register(sub)` adds the `drill` command to the main CLI's subparsers and returns the drill
subcommands, so `drill run` can join them there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from playbooks.drill.evaluation import evaluate, to_json, to_markdown
from playbooks.drill.scenario import ScenarioError, load_scenario
from playbooks.engine import PlanCannotDecide, ReportRejected
from playbooks.plan import load_plan
from services.cli.messages import EXIT_INVALID

EXIT_FAILED = 1  # --strict: the drill ran and some expectation was not met


def _plan(args: argparse.Namespace):
    """The plan a scenario is checked or evaluated under, offline: the shipped one, or `--plan DIR`'s revision
    (7.2.1 验证性演练: a revision tried on a scripted scenario before it is adopted). None: the revision does not
    load (each problem printed with file, line and field)."""
    from playbooks.whatif import RevisionRefused, load_revision

    if args.plan is None:
        return load_plan()
    try:
        return load_revision(args.plan)
    except RevisionRefused as exc:
        for problem in exc.problems:
            print(f"invalid plan: {args.plan}/{problem}", file=sys.stderr)
        return None


def cmd_validate(args: argparse.Namespace) -> int:
    plan = _plan(args)  # offline: the shipped plan (or --plan's), not the log's
    if plan is None:
        return EXIT_INVALID
    try:
        scenario = load_scenario(args.scenario, plan)
    except ScenarioError as exc:
        print(f"invalid scenario: {exc}", file=sys.stderr)
        return EXIT_INVALID
    incidents = len({inj.incident for inj in scenario.injects})
    print(f"{args.scenario}: ok — {scenario.name}（{scenario.kind}，{len(scenario.injects)} 条情景注入，{incidents} 起事件，"
          f"{len(scenario.expect)} 起设预期）")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    # offline, in-process: the shipped plan or --plan's revision (`drill run` goes through the API: the plan in force)
    plan = _plan(args)
    if plan is None:
        return EXIT_INVALID
    try:
        scenario = load_scenario(args.scenario, plan)
    except ScenarioError as exc:
        print(f"invalid scenario: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        evaluation = evaluate(scenario, plan)
    except ScenarioError as exc:  # it names what the plan (a revision given with --plan) does not have
        print(f"invalid scenario: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except (ReportRejected, PlanCannotDecide) as exc:  # the plan loads, yet cannot decide one of its reports
        print(f"the plan {plan.version} cannot run {args.scenario}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    sys.stdout.write(to_json(evaluation) if args.json else to_markdown(evaluation))
    return EXIT_FAILED if args.strict and evaluation.totals.failed else 0


def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    drill = sub.add_parser("drill", help="应急演练: validate or evaluate a drill scenario (playbooks/drill/scenarios/)")
    drill_sub = drill.add_subparsers(dest="drill_command", required=True)

    revision_help = ("a revised plan's data directory (as playbooks/data) to use instead of the shipped plan "
                     "(7.2.1 验证性演练: a revision tried on the scenario before it is adopted)")
    p = drill_sub.add_parser("validate", help="check a scenario; exit 2 naming the line and field when invalid")
    p.add_argument("scenario", help="scenario YAML file")
    p.add_argument("--plan", type=Path, help=revision_help)
    p.set_defaults(func=cmd_validate)

    p = drill_sub.add_parser("eval", help="replay in-process on a simulated clock and print the scored evaluation")
    p.add_argument("scenario", help="scenario YAML file")
    p.add_argument("--json", action="store_true", help="JSON instead of Markdown")
    p.add_argument("--strict", action="store_true", help=f"exit {EXIT_FAILED} when any expectation failed")
    p.add_argument("--plan", type=Path, help=revision_help)
    p.set_defaults(func=cmd_eval)

    p = drill_sub.add_parser("run", help="replay onto the running service at N× real time, then print its evaluation")
    p.add_argument("scenario", help="scenario YAML file")
    p.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second (default 60)")
    p.add_argument("--api", default=None, help="the service's base URL (default: from settings)")
    p.add_argument("--token", default=None, help="a drill controller's token (default: $YINGJI_TOKEN)")
    p.add_argument("--json", action="store_true", help="JSON instead of Markdown")
    p.add_argument("--strict", action="store_true", help=f"exit {EXIT_FAILED} when any expectation failed")
    p.set_defaults(func=cmd_run)
    return drill_sub


def cmd_run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import httpx
    from tenacity import Retrying, retry_if_result, wait_fixed

    from services.settings import get_settings

    token = args.token or get_settings().token.get_secret_value()
    if not token:
        print("token: give --token or set YINGJI_TOKEN (a drill_controller's token)", file=sys.stderr)
        return EXIT_INVALID
    base = args.api or get_settings().api_url
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        resp = client.post("/drills", json={"scenario": Path(args.scenario).read_text(encoding="utf-8"),
                                            "speed": args.speed})
        if resp.status_code == 422:
            for f in resp.json()["fields"]:
                line = f"line {f['line']}: " if f.get("line") else ""
                print(f"invalid scenario: {args.scenario}: {line}{f['field']}: {f['message']}", file=sys.stderr)
            return EXIT_INVALID
        if resp.status_code != 202:
            print(f"drill not started: {resp.status_code} {resp.text}", file=sys.stderr)
            return EXIT_FAILED
        run_id = resp.json()["run_id"]
        print(f"drill {run_id} running at {args.speed:g}× …", file=sys.stderr)
        poll = Retrying(retry=retry_if_result(lambda b: b["status"] == "running"), wait=wait_fixed(0.5))
        body = poll(lambda: client.get(f"/drills/{run_id}").json())
    if body["status"] != "done":
        print(f"drill failed: {body.get('error')}", file=sys.stderr)
        return EXIT_FAILED
    sys.stdout.write(json.dumps(body["evaluation"], ensure_ascii=False, indent=2) + "\n" if args.json else body["markdown"])
    failed = body["evaluation"]["totals"]["failed"]
    return EXIT_FAILED if args.strict and failed else 0
