"""`yingji duty`: who is on duty, a unit's week, a 值班表 imported, a calendar exported — at the terminal.

Like `yingji user` and `yingji report` it talks to the broker and opens sealed names with the key file
(the operator's own machine). Bad input exits 2 with one line per problem, naming row and column.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import NoReturn


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("duty", help="who is on duty; a unit's 值班表; import a 值班表 (.xlsx/.csv/.ics); export .ics")
    p.set_defaults(func=cmd_now, unit=None, at=None)
    duty_sub = p.add_subparsers(dest="duty_command")
    q = duty_sub.add_parser("now", help="person per post now (or --at), for one unit or every unit with a roster")
    q.add_argument("unit", nargs="?", help="unit id or name as the plan writes it")
    q.add_argument("--at", help="a time with its offset, 2026-12-06T08:30:00+08:00")
    q.set_defaults(func=cmd_now)
    q = duty_sub.add_parser("week", help="a unit's shifts for 7 days from --from (this week's Monday 08:30), and its rule breaks")
    q.add_argument("unit")
    q.add_argument("--from", dest="start", help="a time with its offset")
    q.add_argument("--days", type=_days, default=7)
    q.set_defaults(func=cmd_week)
    q = duty_sub.add_parser("import", help="import a 值班表 (.xlsx/.csv, optional 人员 sheet) or an .ics; all or nothing")
    q.add_argument("file")
    q.add_argument("--unit", help="the unit, when the file has no 单位 column (an .ics always needs it)")
    q.set_defaults(func=cmd_import)
    q = duty_sub.add_parser("ics", help="a unit's or a person's shifts as an .ics calendar, on standard output")
    who = q.add_mutually_exclusive_group(required=True)
    who.add_argument("--unit")
    who.add_argument("--person")
    q.add_argument("--from", dest="start", help="a time with its offset (now when absent)")
    q.add_argument("--days", type=_days, default=31)
    q.set_defaults(func=cmd_ics)


def _days(text: str) -> int:
    days = int(text)
    if not 1 <= days <= 62:
        raise argparse.ArgumentTypeError("between 1 and 62 days")
    return days


def _context():
    from services.cli.in_force import plan_in_force
    from services.duty.book import read_book
    from services.privacy import Sealer
    from services.settings import get_settings

    s = get_settings()
    plan = plan_in_force(s.bootstrap, "duty")  # duty.yaml's rules as the running service applies them
    try:
        return plan, read_book(s.bootstrap, Sealer.from_file(s.key_file), plan.duty), s
    except Exception as exc:  # noqa: BLE001 - no broker, or the topics not read: say so, no traceback
        print(f"the rosters could not be read from {s.bootstrap}: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def _refuse(message: str) -> NoReturn:
    """Bad input: one line, exit 2 (services/cli/messages.py)."""
    from services.cli.messages import EXIT_INVALID

    print(message, file=sys.stderr)
    raise SystemExit(EXIT_INVALID)


def _unit_id(plan, text: str, name: str = "unit") -> str:
    unit = text if text in plan.units else plan.unit_ids_by_name.get(text)
    return unit if unit is not None else _refuse(f"{name}: no unit {text!r} in the plan")


def _time(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        _refuse(f"--{name}: {text!r} is not a time (2026-12-06T08:30:00+08:00)")
    if t.tzinfo is None:
        _refuse(f"--{name}: give the time with its offset (+08:00)")
    return t


def _local(t: datetime) -> str:
    from playbooks.duty.roster import SHANGHAI

    return t.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def cmd_now(args: argparse.Namespace) -> int:
    from playbooks.duty.roster import on_duty
    from services.clock import WallClock
    from topics.duty import POST_NAMES, Post

    plan, book, _ = _context()
    at = _time(args.at, "at") or WallClock().now()
    if args.unit:
        units = [_unit_id(plan, args.unit)]
    else:
        units = sorted(set(book.records) | set(plan.duty.twenty_four_hour_units.value))
    roster = book.roster()
    print(f"值班 {_local(at)}（北京时间）")
    for unit in units:
        print(f"{plan.unit_name(unit)} ({unit})")
        for post in (Post.leader, Post.chief, Post.officer):
            found = on_duty(roster, plan.duty, unit, post, at)
            p = found.person
            who = f"{p.name} ({p.id}) {p.contacts.mobile or ''}".rstrip() if p else "—— 无人值班"
            until = f" 至 {_local(found.shift.end)}" if found.shift else ""
            note = "" if found.source in ("rotation", "table") else f"  [{found.source}: {found.reasons[-1]}]"
            print(f"  {POST_NAMES[post]}: {who}{until}{note}")
    return 0


def cmd_week(args: argparse.Namespace) -> int:
    from playbooks.duty.roster import shifts, week_start
    from playbooks.duty.rules import check
    from services.clock import WallClock
    from topics.duty import POST_NAMES

    plan, book, _ = _context()
    unit = _unit_id(plan, args.unit)
    now = WallClock().now()
    start = _time(args.start, "from") or week_start(now, plan.duty)  # as GET /units/{id}/roster
    roster = book.roster()
    print(f"{plan.unit_name(unit)} 值班表 {_local(start)} 起 {args.days} 天")
    for s in (s for s in shifts(roster, start, start + timedelta(days=args.days)) if s.unit_id == unit):
        print(f"  {_local(s.start)} – {_local(s.end)}  {POST_NAMES[s.post]}  {book.name(s.person_id) or s.person_id}  ({s.ref})")
    problems = check(roster, plan.duty, plan.unit_names, now, only_units={unit})
    for p in problems:
        print(f"  ✗ {p}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from playbooks.duty.table import TableRefused
    from services.cli.messages import EXIT_INVALID
    from services.clock import WallClock
    from services.duty.book import publish
    from services.duty.changes import import_file

    plan, book, s = _context()
    path = Path(args.file)
    unit = _unit_id(plan, args.unit, "--unit") if args.unit else None
    try:
        data = path.read_bytes()
        change = import_file(book, plan, data, path.name, unit_id=unit, now=WallClock().now(), by="cli")
    except TableRefused as exc:
        print(f"{path.name}: refused, nothing kept ({len(exc.problems)} problems)", file=sys.stderr)
        for p in exc.problems:
            print(f"{path.name}: {p}", file=sys.stderr)
        return EXIT_INVALID
    except (ValueError, OSError) as exc:
        print(f"{path.name}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        publish(s.bootstrap, change.records, change.events)
    except Exception as exc:  # noqa: BLE001 - the broker did not take it: nothing or part was written
        print(f"{path.name}: the broker did not acknowledge the roster ({type(exc).__name__}); run it again", file=sys.stderr)
        return 1
    units = "、".join(plan.unit_name(r.unit_id) for r in change.records) or "nothing changed"
    print(f"{path.name}: kept — {units}; {change.people} people, {change.shifts} shifts, {change.rotations} rotations")
    return 0


def cmd_ics(args: argparse.Namespace) -> int:
    from playbooks.duty.ical import to_ics
    from playbooks.duty.roster import shifts
    from services.clock import WallClock

    plan, book, _ = _context()
    start = _time(args.start, "from") or WallClock().now()
    roster = book.roster()
    mine = shifts(roster, start, start + timedelta(days=args.days))
    if args.unit:
        unit = _unit_id(plan, args.unit, "--unit")
        mine, title = [s for s in mine if s.unit_id == unit], f"{plan.unit_name(unit)} 值班表"
    else:
        person = roster.person(args.person) or _refuse(f"--person: no person {args.person!r} in the directory")
        mine, title = [s for s in mine if s.person_id == person.id], f"{person.name} 值班"
    names = {p.id: p.name for p in roster.people}
    sys.stdout.buffer.write(to_ics(mine, names=names, units=plan.unit_names, title=title))
    return 0
