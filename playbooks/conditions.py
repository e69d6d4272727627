"""A rule's `when` against one incident: whether it holds, and what each condition key reads.

The engine asks `holds`; its memo keys rule matching by `READS`, narrowed to the keys and values
the plan's conditions actually use (playbooks.memo), so the key follows the plan's conditions
instead of a list kept in step with this function by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

from playbooks.plan import FACTS, Condition, IncidentType, Plan
from topics.models import Grade, ReportFacts, ResponseLevel

# Derived facts and the counts they add up (production safety counts the missing with the dead and
# acute poisoning with serious injury). Counts are never negative, so a derived fact is positive
# exactly when one of its parts is: what READS relies on.
DERIVED_FACTS: dict[str, tuple[str, ...]] = {
    "deaths_incl_missing": ("deaths", "missing"),
    "serious_injuries_incl_poisoned": ("serious_injuries", "poisoned"),
    "poisoned_or_serious_injuries": ("serious_injuries", "poisoned"),
}


def fact_value(report: ReportFacts, fact: str) -> float:
    f = report.facts
    match fact:
        case _ if fact in DERIVED_FACTS:
            return sum(getattr(f, part) for part in DERIVED_FACTS[fact])
        case "magnitude" | "interruption_hours":
            value = getattr(f, fact)
            return 0.0 if value is None else float(value)
        case _ if fact in FACTS:
            return float(getattr(f, fact))
    raise KeyError(fact)


@dataclass(frozen=True)
class Context:
    report: ReportFacts
    itype: IncidentType
    grade: Grade
    level: ResponseLevel | None
    ended: bool = False
    announce_end: bool = False  # 4.8.2: 区应急委 decided to announce the end to the public
    reading: tuple | None = None  # what the plan's conditions read of the report, once per decision


def holds(cond: Condition, ctx: Context) -> bool:
    """Every key the condition gives must hold; the first that fails decides."""
    r = ctx.report
    if cond.always is not None and not cond.always:
        return False
    if cond.grade_in is not None and ctx.grade not in cond.grade_in:
        return False
    if cond.level_in is not None and (ctx.level is None or ctx.level not in cond.level_in):
        return False
    if cond.category_in is not None and ctx.itype.category not in cond.category_in:
        return False
    if cond.subcategory_in is not None and ctx.itype.subcategory not in cond.subcategory_in:
        return False
    if cond.type_in is not None and ctx.itype.id not in cond.type_in:
        return False
    if cond.fact_positive is not None and not any(fact_value(r, f) > 0 for f in cond.fact_positive):
        return False
    if cond.flag is not None and not any(getattr(r.flags, f) for f in cond.flag):
        return False
    if cond.key_area_nonempty is not None and bool(r.location.key_area) != cond.key_area_nonempty:
        return False
    if cond.key_area_contains is not None and not any(a in cond.key_area_contains for a in r.location.key_area):
        return False
    if cond.street_given is not None and bool(r.location.street) != cond.street_given:
        return False
    if cond.ended is not None and ctx.ended != cond.ended:
        return False
    if cond.announce_end is not None and ctx.announce_end != cond.announce_end:
        return False
    if cond.any is not None and not any(holds(c, ctx) for c in cond.any):
        return False
    if cond.all is not None and not all(holds(c, ctx) for c in cond.all):
        return False
    return True


# What each condition key reads. Of the incident's context (its type, grade, level, end):
CONTEXT_READS: dict[str, Callable[[Context], Hashable]] = {
    "grade_in": lambda ctx: ctx.grade,
    "level_in": lambda ctx: ctx.level,
    "category_in": lambda ctx: ctx.itype.category,
    "subcategory_in": lambda ctx: ctx.itype.subcategory,
    "type_in": lambda ctx: ctx.itype.id,
    "ended": lambda ctx: ctx.ended,
    "announce_end": lambda ctx: ctx.announce_end,
}
# Of the report, narrowed to the names the plan's conditions give (raw facts, flags, key areas):
REPORT_READS: dict[str, Callable[[ReportFacts, tuple[str, ...]], Hashable]] = {
    "fact_positive": lambda r, named: tuple((getattr(r.facts, f) or 0) > 0 for f in named),
    "flag": lambda r, named: tuple(getattr(r.flags, f) for f in named),
    "key_area_nonempty": lambda r, _: bool(r.location.key_area),
    "key_area_contains": lambda r, named: tuple(sorted({a for a in r.location.key_area if a in named})),
    "street_given": lambda r, _: bool(r.location.street),
}
COMBINATORS = ("always", "any", "all")  # read nothing of the incident themselves


def plan_reads(plan: Plan) -> dict[str, tuple[str, ...]]:
    """Every condition key the plan's rules use, each with the names it gives (raw facts for a
    derived one), sorted: what rule matching can depend on."""
    named: dict[str, set[str]] = {}

    def walk(c: Condition) -> None:
        for key in c.model_fields_set:
            if key in COMBINATORS or getattr(c, key) is None:
                continue
            names = named.setdefault(key, set())
            if key == "fact_positive":
                for f in c.fact_positive or []:
                    names.update(DERIVED_FACTS.get(f, (f,)))
            elif key in ("flag", "key_area_contains"):
                names.update(getattr(c, key))
        for sub in (c.any or []) + (c.all or []):
            walk(sub)

    for rule in (*plan.response.base_levels, *plan.response.raise_one_level, *plan.notifications, *plan.obligations):
        walk(rule.when)
    unknown = set(named) - set(CONTEXT_READS) - set(REPORT_READS)
    if unknown:  # a new condition key must say what it reads, or the memo would mix up incidents
        raise KeyError(f"condition keys without a reading: {sorted(unknown)}")
    return {key: tuple(sorted(names)) for key, names in sorted(named.items())}
