"""`yingji drill validate|eval SCENARIO`: check a drill scenario, or evaluate it in-process.

`eval` needs no broker: the pure engine on the scenario's own simulated clock (playbooks/drill.py).
`register(sub)` adds the `drill` command to the main CLI's subparsers and returns the drill
subcommands, so `drill run` can join them there.
"""

from __future__ import annotations

import argparse
import sys

from playbooks.drill import ScenarioError, evaluate, load_scenario, to_json, to_markdown
from playbooks.plan import load_plan

EXIT_INVALID = 2  # as `classify`: the input named a bad field
EXIT_FAILED = 1  # --strict: the drill ran and some expectation was not met


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(args.scenario, load_plan())
    except ScenarioError as exc:
        print(f"invalid scenario: {exc}", file=sys.stderr)
        return EXIT_INVALID
    incidents = len({inj.incident for inj in scenario.injects})
    print(f"{args.scenario}: ok — {scenario.name}（{scenario.kind}，{len(scenario.injects)} 条情景注入，{incidents} 起事件，"
          f"{len(scenario.expect)} 起设预期）")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    plan = load_plan()
    try:
        scenario = load_scenario(args.scenario, plan)
    except ScenarioError as exc:
        print(f"invalid scenario: {exc}", file=sys.stderr)
        return EXIT_INVALID
    evaluation = evaluate(scenario, plan)
    sys.stdout.write(to_json(evaluation) if args.json else to_markdown(evaluation))
    return EXIT_FAILED if args.strict and evaluation.totals.failed else 0


def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    drill = sub.add_parser("drill", help="应急演练: validate or evaluate a drill scenario (playbooks/drills/)")
    drill_sub = drill.add_subparsers(dest="drill_command", required=True)

    p = drill_sub.add_parser("validate", help="check a scenario; exit 2 naming the line and field when invalid")
    p.add_argument("scenario", help="scenario YAML file")
    p.set_defaults(func=cmd_validate)

    p = drill_sub.add_parser("eval", help="replay in-process on a simulated clock and print the scored evaluation")
    p.add_argument("scenario", help="scenario YAML file")
    p.add_argument("--json", action="store_true", help="JSON instead of Markdown")
    p.add_argument("--strict", action="store_true", help=f"exit {EXIT_FAILED} when any expectation failed")
    p.set_defaults(func=cmd_eval)
    return drill_sub


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry until services/cli.py calls register()."""
    parser = argparse.ArgumentParser(prog="yingji")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
