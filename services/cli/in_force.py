"""The plan a command acting for the running service reads: the one in force on the log (the last revision
adopted on yingji.plan.adoptions, issue 24 item 3), else the shipped one, as the workers and the API hold it.
A command that runs offline, with no broker, reads the shipped plan (playbooks/data) and says so where it does."""

from __future__ import annotations

import sys

from playbooks.plan import Plan, load_plan
from services.cli.plan import EXIT_BROKER


def plan_in_force(bootstrap: str, command: str) -> Plan:
    """The plan in force; exit 1 naming the broker when the log cannot be read (no traceback): acting under
    the shipped plan while a revision is in force would answer what the service does not do."""
    from kafka.errors import KafkaError

    from services.plan_book import in_force, read_adoptions

    try:
        return in_force(read_adoptions(bootstrap), load_plan())[1]
    except (KafkaError, TimeoutError, OSError, ValueError) as exc:  # ValueError: PlanError, a revision not loading
        print(f"yingji {command}: the plan in force could not be read from {bootstrap}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        raise SystemExit(EXIT_BROKER) from None
