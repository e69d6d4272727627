"""The engine's memo: rule matching by what the plan's conditions read, whole decisions by what a
decision reads of its report. Only speed lives here; the rules are in playbooks.engine.

Rule matching depends only on what `holds` reads (playbooks.conditions.READS), so incidents that
read alike under every condition key the plan uses get the same rules, and their (immutable)
notices and reasons are computed once per plan version. The key is derived from the plan's
conditions: a new condition key, or a rule that reads one more fact, changes it with no edit here.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from typing import TypeVar

from playbooks.conditions import CONTEXT_READS, REPORT_READS, Context, plan_reads
from playbooks.plan import Plan
from topics.models import ReportFacts

T = TypeVar("T")


class BoundedMemo(dict):
    """Results by key, bounded: when full, the older half goes and the recent stay warm.

    Bounded small on purpose: a full garbage collection walks every entry. Deciding 30,000 new
    incidents in-process, one memo of 50,000 entries made each full collection 87-370 ms; these two
    of 10,000 make it 81-201 ms."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def get_or_compute(self, key: tuple, compute: Callable[[], T]) -> T:
        hit = self.get(key)
        if hit is None:
            if len(self) >= self.limit:
                for old in list(islice(self, self.limit // 2)):
                    del self[old]
            hit = self[key] = compute()
        return hit


# Rule matching and what is built from it, by match_key or by keys naming their own inputs.
RULES = BoundedMemo(limit=10_000)
# Whole decisions by report_key: apart from the rule matching, so that a run of reports never seen
# before cannot push the rules out, nor the reverse.
DECISIONS = BoundedMemo(limit=10_000)


def clear_memos() -> None:
    """A cold engine (tests compare against one)."""
    RULES.clear()
    DECISIONS.clear()


def memo(key: tuple, compute: Callable[[], T]) -> T:
    return RULES.get_or_compute(key, compute)


def _reads(plan: Plan) -> tuple[tuple[Callable, ...], tuple[tuple[Callable, tuple[str, ...]], ...]]:
    """The plan's condition keys as readers: of the context, and of the report with their names."""
    def compute():
        used = plan_reads(plan)
        return (tuple(CONTEXT_READS[k] for k in used if k in CONTEXT_READS),
                tuple((REPORT_READS[k], names) for k, names in used.items() if k in REPORT_READS))
    return memo((plan.version, "reads"), compute)


def report_reading(report: ReportFacts, plan: Plan) -> tuple:
    """What the plan's conditions read of a report: computed once per decision."""
    return tuple(read(report, names) for read, names in _reads(plan)[1])


def match_key(ctx: Context, plan: Plan, *extra) -> tuple:
    """The key of rule matching for this context; `extra` names the result and anything else of
    the context it is built from (the lead unit of an obligation, say)."""
    reading = ctx.reading if ctx.reading is not None else report_reading(ctx.report, plan)
    return (plan.version, "match", *(read(ctx) for read in _reads(plan)[0]), reading, *extra)


def report_key(report: ReportFacts, plan: Plan) -> tuple:
    """Everything of a report a decision reads but its ids and times. A zero is keyed by how it
    prints: -0.0 == 0.0, yet a grade reason would print the sign."""
    loc = report.location
    return (plan.version, "decision", report.type, loc.street, tuple(loc.key_area),
            tuple([v if v else repr(v) for v in report.facts.__dict__.values()]),
            tuple(report.flags.__dict__.values()), report.asserted_grade, report.asserted_by)
