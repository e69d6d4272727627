"""`yingji plan adopt|rollback|history`: adopting a revised plan live, going back, and what was in force when
(issue 24 item 3; 7.1.5 修订). An adoption is one record on yingji.plan.adoptions carrying the revision's texts
and the version it replaces; every worker and API replica switches to it as it reads it (services/plan_book.py),
unless another adoption came first on the log: then it is refused as a conflict (playbooks/adoptions.py) and
the command, which reads the log back after writing, says so and exits 3. The what-if page adopts the same way
(POST /plan/adoptions).

    yingji plan adopt --plan DIR --by NAME --reason TEXT [--whatif-days 30]
    yingji plan rollback --to VERSION --by NAME --reason TEXT
    yingji plan history
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from services.cli.messages import EXIT_INVALID, validation_messages

EXIT_BROKER = 1  # the log could not be read or written
EXIT_CONFLICT = 3  # written, but refused when read back: another adoption came first (or its texts do not load)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="adopt a revised plan live, roll back, list the adoptions")
    plan_sub = p.add_subparsers(dest="plan_command", required=True)

    a = plan_sub.add_parser("adopt", help="validate a revised plan, print its what-if, adopt it")
    a.add_argument("--plan", required=True, type=Path, help="the revised plan's data directory (as playbooks/data)")
    a.add_argument("--by", required=True, help="who adopts it (name and post)")
    a.add_argument("--reason", required=True, help="why: the revision's grounds (7.1.5)")
    a.add_argument("--whatif-days", type=int, default=30, help="the what-if's period: the last N days (default 30)")
    a.set_defaults(func=cmd_adopt)

    r = plan_sub.add_parser("rollback", help="adopt again an earlier version (an earlier adoption's, or the shipped plan)")
    r.add_argument("--to", required=True, dest="version", help="the version to go back to (see `yingji plan history`)")
    r.add_argument("--by", required=True)
    r.add_argument("--reason", required=True)
    r.set_defaults(func=cmd_rollback)

    h = plan_sub.add_parser("history", help="every adoption on the log, the one in force marked")
    h.set_defaults(func=cmd_history)


def _fail(message: str, code: int = EXIT_INVALID) -> int:
    print(f"yingji plan: {message}", file=sys.stderr)
    return code


def _summary(report) -> str:
    t = report.totals
    aspects = "、".join(f"{k} {v}" for k, v in sorted(t.by_aspect.items())) or "无"
    return (f"what-if {report.period_from.isoformat()} — {report.period_to.isoformat()}: "
            f"plan in force {report.plan_in_force}, revision {report.revised_plan}\n"
            f"  incidents {t.incidents}, differing {t.differing} (by aspect: {aspects})\n"
            f"  breaches {t.breaches_before} → {t.breaches_after}, late {t.late_before} → {t.late_after}, "
            f"notices {t.notices_before} → {t.notices_after}\n")


def _refused(exc) -> int:
    for message in validation_messages(exc):
        print(f"invalid adoption: {message}", file=sys.stderr)
    return EXIT_INVALID


def cmd_adopt(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError
    from pydantic import ValidationError

    from playbooks.plan import load_plan
    from playbooks.whatif import RevisionRefused, load_revision
    from services.plan_book import in_force as in_force_of
    from services.plan_book import (
        RecordTooLarge,
        changes_lines,
        plan_texts,
        publish_adoption,
        read_adoptions,
        with_changes,
    )
    from services.settings import get_settings
    from playbooks.adoptions import whatif_summary
    from services.whatif import run_whatif
    from topics.plan import PlanAdopted, adoption_id

    if args.whatif_days < 1:
        return _fail("--whatif-days must be 1 or more")
    try:  # validated first, as the loader does: every problem with file, line and field; nothing written
        revision = load_revision(args.plan)
    except RevisionRefused as exc:
        for problem in exc.problems:
            print(f"invalid plan: {args.plan}/{problem}", file=sys.stderr)
        return EXIT_INVALID
    now = datetime.now(timezone.utc)
    try:  # the record checked before the log is read (its texts' size and names, who, why)
        record = PlanAdopted(id=adoption_id(revision.version, now), version=revision.version,
                             files=plan_texts(args.plan), adopted_by=args.by, adopted_at=now, reason=args.reason)
    except ValidationError as exc:
        return _refused(exc)
    bootstrap = get_settings().bootstrap
    try:
        adoptions = read_adoptions(bootstrap)
        shipped = load_plan()
        ruling, in_force = in_force_of(adoptions, shipped)
        current = ruling.adoption
        if revision.version == in_force.version:
            return _fail(f"version {revision.version} is the plan in force already: nothing adopted")
        report = run_whatif(args.plan, now - timedelta(days=args.whatif_days), now, bootstrap=bootstrap,
                            in_force=in_force)
        sys.stdout.write(_summary(report))
        try:
            record = with_changes(record.model_copy(update={"previous_version": in_force.version,
                                                            "whatif": whatif_summary(report)}), in_force, revision)
        except RecordTooLarge as exc:
            return _fail(f"invalid adoption: {exc}")
        print("\n".join(["changes:", *(f"  {line}" for line in changes_lines(record))]) if record.changes
              else "changes: none but comments or formatting")
        publish_adoption(bootstrap, record)
        refused = _read_back(bootstrap, record, shipped)
    except (KafkaError, TimeoutError) as exc:
        return _fail(f"the log could not be read or written: {exc!r}", EXIT_BROKER)
    if refused is not None:
        return _fail(f"{record.id} written but refused, nothing adopted: {refused}", EXIT_CONFLICT)
    print(f"adopted {record.version} ({record.id}), replacing {in_force.version}"
          f"{f' ({current.id})' if current else ' (shipped)'}")
    return 0


def _read_back(bootstrap: str, record, shipped) -> str | None:
    """The log read again after writing `record` and folded as every process folds it: None if it took
    effect, else why not (another adoption written against the same version came first: a conflict)."""
    from services.plan_book import in_force as in_force_of
    from services.plan_book import read_adoptions

    adoptions = read_adoptions(bootstrap)
    if record.id not in {a.id for a in adoptions}:
        raise TimeoutError(f"{record.id} written but not read back")
    ruling, _ = in_force_of(adoptions, shipped)
    why = ruling.refused.get(record.id)
    return None if why is None else why.reason


def cmd_rollback(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError
    from pydantic import ValidationError

    from playbooks.plan import load_plan
    from services.plan_book import in_force as in_force_of
    from services.plan_book import (
        RecordTooLarge,
        changes_lines,
        publish_adoption,
        read_adoptions,
        rollback_texts,
        with_changes,
    )
    from services.settings import get_settings
    from topics.plan import PlanAdopted, adoption_id

    bootstrap = get_settings().bootstrap
    try:
        adoptions = read_adoptions(bootstrap)
        shipped = load_plan()
        ruling, in_force = in_force_of(adoptions, shipped)
        if args.version == in_force.version:
            return _fail(f"version {args.version} is the plan in force already: nothing adopted")
        source = rollback_texts(ruling, args.version, shipped)
        if source is None:
            known = ", ".join(dict.fromkeys([shipped.version, *(a.version for a in ruling.accepted())]))
            return _fail(f"--to: no version {args.version!r} was in force or shipped (known: {known})")
        files, rollback_of = source
        now = datetime.now(timezone.utc)
        try:
            record = PlanAdopted(id=adoption_id(args.version, now), version=args.version, files=files,
                                 adopted_by=args.by, adopted_at=now, reason=args.reason,
                                 previous_version=in_force.version, rollback_of=rollback_of)
        except ValidationError as exc:
            return _refused(exc)
        try:
            record = with_changes(record, in_force)
        except RecordTooLarge as exc:
            return _fail(f"invalid rollback: {exc}")
        print("\n".join(["changes:", *(f"  {line}" for line in changes_lines(record))]) if record.changes
              else "changes: none but comments or formatting")
        publish_adoption(bootstrap, record)
        refused = _read_back(bootstrap, record, shipped)
    except (KafkaError, TimeoutError) as exc:
        return _fail(f"the log could not be read or written: {exc!r}", EXIT_BROKER)
    if refused is not None:
        return _fail(f"{record.id} written but refused, nothing rolled back: {refused}", EXIT_CONFLICT)
    print(f"rolled back to {record.version} ({rollback_of}) from {in_force.version}: {record.id}")
    return 0


def cmd_history(_: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from playbooks.plan import load_plan
    from services.plan_book import changes_lines, read_adoptions
    from services.plan_book import in_force as in_force_of
    from services.settings import get_settings

    shipped = load_plan()
    try:
        adoptions = read_adoptions(get_settings().bootstrap)
    except (KafkaError, TimeoutError) as exc:
        return _fail(f"the log could not be read: {exc!r}", EXIT_BROKER)
    ruling, _ = in_force_of(adoptions, shipped)
    marker = "" if ruling.adoption else "  *in force*"
    print(f"shipped\t{shipped.version}{marker}")
    for a in ruling.records:
        what = f"rollback of {a.rollback_of}" if a.rollback_of else (
            f"what-if: {a.whatif.differing} of {a.whatif.incidents} incidents differ" if a.whatif else "")
        refused = ruling.refused.get(a.id)
        marker = ("  *in force*" if ruling.adoption is not None and a.id == ruling.adoption.id
                  else f"  *refused ({refused.kind.value}): {refused.reason}*" if refused else "")
        print(f"{a.adopted_at.isoformat()}\t{a.version}\t{a.adopted_by}\t{a.reason}\t{what}\t{a.id}{marker}")
        for line in changes_lines(a, limit=5):  # what it changed, indented under it
            print(f"\t{line}")
    return 0
