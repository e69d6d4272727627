"""`yingji drill validate|eval SCENARIO`: check a drill scenario, or evaluate it in-process.

`eval` needs no broker: the pure engine on the scenario's own simulated clock (playbooks/drill/).
`register(sub)` adds the `drill` command to the main CLI's subparsers and returns the drill
subcommands, so `drill run` can join them there.
"""

from __future__ import annotations

import argparse
import sys

from playbooks.drill.evaluation import evaluate, to_json, to_markdown
from playbooks.drill.scenario import ScenarioError, load_scenario
from playbooks.plan import load_plan
from services.cli.messages import EXIT_INVALID

EXIT_FAILED = 1  # --strict: the drill ran and some expectation was not met


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(args.scenario, load_plan())  # offline: the shipped plan, not the log's
    except ScenarioError as exc:
        print(f"invalid scenario: {exc}", file=sys.stderr)
        return EXIT_INVALID
    incidents = len({inj.incident for inj in scenario.injects})
    print(f"{args.scenario}: ok — {scenario.name}（{scenario.kind}，{len(scenario.injects)} 条情景注入，{incidents} 起事件，"
          f"{len(scenario.expect)} 起设预期）")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    plan = load_plan()  # offline, in-process: the shipped plan (`drill run` goes through the API: the plan in force)
    try:
        scenario = load_scenario(args.scenario, plan)
    except ScenarioError as exc:
        print(f"invalid scenario: {exc}", file=sys.stderr)
        return EXIT_INVALID
    evaluation = evaluate(scenario, plan)
    sys.stdout.write(to_json(evaluation) if args.json else to_markdown(evaluation))
    return EXIT_FAILED if args.strict and evaluation.totals.failed else 0


def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    drill = sub.add_parser("drill", help="应急演练: validate or evaluate a drill scenario (playbooks/drill/scenarios/)")
    drill_sub = drill.add_subparsers(dest="drill_command", required=True)

    p = drill_sub.add_parser("validate", help="check a scenario; exit 2 naming the line and field when invalid")
    p.add_argument("scenario", help="scenario YAML file")
    p.set_defaults(func=cmd_validate)

    p = drill_sub.add_parser("eval", help="replay in-process on a simulated clock and print the scored evaluation")
    p.add_argument("scenario", help="scenario YAML file")
    p.add_argument("--json", action="store_true", help="JSON instead of Markdown")
    p.add_argument("--strict", action="store_true", help=f"exit {EXIT_FAILED} when any expectation failed")
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
