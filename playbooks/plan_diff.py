"""What a revision changes in the plan's rules (7.1.5 修订), file by file: each field added, removed or changed,
with the plan section (or source) of the rule it is in, before and after.

The what-if (playbooks.whatif) says what a revision would have done to the period's incidents; this says what
it is, so that a revision no recorded incident touches (a rare type's lead unit, a 特别重大 threshold) still
shows what it changes. Pure: two plans in, the list out. Compared as the loader read them, so a comment, a
key's order or a quoting style is no change; the versions (digests of the texts) still differ.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from playbooks.memo import memo
from playbooks.plan import Plan
from topics.plan import PLAN_CHANGES_KEPT, PlanChange

# Each plan file as the Plan holds it (the loader spreads a few files over several fields).
FILE_VIEWS: dict[str, Callable[[Plan], Any]] = {
    "units.yaml": lambda p: {"units": list(p.units.values())},
    "incident_types.yaml": lambda p: {"types": list(p.types.values())},
    "grading.yaml": lambda p: {"families": p.grading},
    "response.yaml": lambda p: p.response,
    "notifications.yaml": lambda p: {"rules": p.notifications},
    "obligations.yaml": lambda p: {"parties": p.parties, "obligations": p.obligations,
                                   "escalation_chains": p.escalation_chains, "end_authority": p.end_authority},
    "duty.yaml": lambda p: p.duty,
    "ladder.yaml": lambda p: p.ladder,
    "channels.yaml": lambda p: p.channels,
    "warnings.yaml": lambda p: p.warnings,
    "command.yaml": lambda p: p.command,
    "ledger.yaml": lambda p: p.ledger,
    "drills.yaml": lambda p: p.drills,
    "district_grid.yaml": lambda p: p.district_grid,
}
# Lists whose order is no rule: their items are matched by id, and moving one is no change. In every other list
# matched by id the order may be a rule (channels.yaml's first matching route, the commanders' order, aliases of a
# key area of the same length), so the items moved are a change.
UNORDERED = {("units.yaml", "units"), ("incident_types.yaml", "types")}
# The fields by which a list's items are told apart, in this order: the first every item has, unique among them
ITEM_KEYS = ("id", "kind", "step", "fact", "name", "role", "unit")
VALUE_MAX = 240  # characters of a value (or a path, a basis) shown; a longer one ends in …


def recorded(in_force: Plan, revised: Plan) -> dict[str, Any]:
    """The changes as an adoption keeps them (topics.plan.PlanAdopted): the first PLAN_CHANGES_KEPT, the count of
    the rest."""
    changes = plan_changes(in_force, revised)
    return {"changes": changes[:PLAN_CHANGES_KEPT], "changes_more": max(0, len(changes) - PLAN_CHANGES_KEPT)}


def plan_changes(in_force: Plan, revised: Plan) -> list[PlanChange]:
    """Every field the revision adds, removes or changes, file by file in the loader's order."""
    out: list[PlanChange] = []
    before, after = _views(in_force), _views(revised)
    for file in FILE_VIEWS:
        (a, a_text), (b, b_text) = before[file], after[file]
        if a_text != b_text:  # the same text is the same file: most of a revision is
            _diff(file, "", a, b, (None, False), out)
    return out


def same_files(a: Plan, b: Plan, *, exclude: frozenset[str] = frozenset()) -> bool:
    """Whether the two plans' files are the same as loaded (their JSON texts: order and kinds of values included),
    but those excluded."""
    va, vb = _views(a), _views(b)
    return all(va[f][1] == vb[f][1] for f in FILE_VIEWS if f not in exclude)


def _views(plan: Plan) -> dict[str, tuple[Any, str]]:
    """Each file as plain data and as its JSON text, once a plan version (every what-if asks: dumping a plan costs
    more than comparing two)."""
    def compute() -> dict[str, tuple[Any, str]]:
        out = {}
        for file, view in FILE_VIEWS.items():
            plain = _plain(view(plan))
            out[file] = (plain, json.dumps(plain, ensure_ascii=False))
        return out
    return memo((plan.version, "plan_diff.views"), compute)


def _plain(value: Any) -> Any:
    """JSON-like data; a whole number held as a float (a threshold) as the YAML writes it: 3, not 3.0."""
    if isinstance(value, BaseModel):
        return _plain(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _context(value: Any, outer: tuple[str | None, bool]) -> tuple[str | None, bool]:
    """The rule's section (or source) and whether it is our choice: the nearest mapping that says."""
    if not isinstance(value, dict):
        return outer
    basis = value.get("section") or value.get("source")
    basis = basis if isinstance(basis, str) else outer[0]
    ours = value.get("our_choice")
    return basis, ours if isinstance(ours, bool) else outer[1]


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= VALUE_MAX else text[:VALUE_MAX - 1] + "…"


def _keyed(items: list[Any], key: str) -> bool:
    values = [i.get(key) if isinstance(i, dict) else None for i in items]
    return all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values) and len(set(values)) == len(values)


def _item_key(a: list[Any], b: list[Any]) -> str | None:
    """The field that tells the items of both lists apart, if one does: their items are then matched by it."""
    if not (a or b):
        return None
    return next((key for key in ITEM_KEYS if _keyed(a, key) and _keyed(b, key)), None)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same kinds all the way down: `1`, `true` and `"1"` are three values (Python's == makes
    the first two one)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _diff(file: str, path: str, a: Any, b: Any, ctx: tuple[str | None, bool], out: list[PlanChange]) -> None:
    if _same(a, b):
        return
    if isinstance(a, dict) and isinstance(b, dict):
        _members(file, lambda k: _join(path, k), a, b, _context(b, _context(a, ctx)), out)
        return
    if isinstance(a, list) and isinstance(b, list):
        key = _item_key(a, b)
        if key is not None:
            by_a, by_b = {i[key]: i for i in a}, {i[key]: i for i in b}
            _members(file, lambda k: f"{path}[{k}]", by_a, by_b, ctx, out)
            if (file, path) not in UNORDERED:  # the items both have, moved: only those, in each order
                kept_a, kept_b = [k for k in by_a if k in by_b], [k for k in by_b if k in by_a]
                moved = {k for i, k in enumerate(kept_a) if kept_b[i] != k}
                if moved:
                    out.append(_change(file, path, "changed", ctx, [k for k in kept_a if k in moved],
                                       [k for k in kept_b if k in moved]))
            return
        if len(a) == len(b) and all(isinstance(i, dict) for i in a + b):  # no key, the same length: item by item
            for i, (x, y) in enumerate(zip(a, b)):
                _diff(file, _join(path, str(i)), x, y, ctx, out)
            return
    out.append(_change(file, path or "(file)", "changed", ctx, a, b))


def _members(file: str, where: Callable[[Any], str], a: dict, b: dict, ctx: tuple[str | None, bool],
             out: list[PlanChange]) -> None:
    """A mapping's keys, or a list's items by their key: each removed, added, or compared, in the first's order."""
    for k in [*a, *(k for k in b if k not in a)]:
        if k not in b:
            out.append(_change(file, where(k), "removed", _context(a[k], ctx), a[k], None))
        elif k not in a:
            out.append(_change(file, where(k), "added", _context(b[k], ctx), None, b[k]))
        else:
            _diff(file, where(k), a[k], b[k], ctx, out)


def _change(file: str, path: str, change: Literal["added", "removed", "changed"], ctx: tuple[str | None, bool],
            before: Any, after: Any) -> PlanChange:
    # every text clipped: an adoption keeps 50 of these beside texts of up to 768 KiB, within the topic's 1 MiB
    return PlanChange(file=file, path=_text(path), change=change, basis=None if ctx[0] is None else _text(ctx[0]),
                      our_choice=ctx[1],
                      before=None if change == "added" else _text(before),
                      after=None if change == "removed" else _text(after))
