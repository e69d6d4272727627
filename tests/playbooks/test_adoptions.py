"""The adoptions folded compare-and-set (issue 24 item 3, 7.1.5 修订; playbooks/adoptions.py): one row a case.
Texts are tiny stand-ins (the fold loads nothing: whether texts load is the loader's, stood in for by
`BROKEN`), each version their digest as the plan's loader makes it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from playbooks.adoptions import Refusal, rollback_source, rule, texts_version
from playbooks.plan import DATA_DIR, load_plan
from topics.plan import SHIPPED, PlanAdopted

AT = datetime(2026, 12, 7, 8, 0, tzinfo=timezone.utc)
TEXTS = {name: {"units.yaml": f"# {name}\n"} for name in ("S", "A", "B", "C", "X")}  # S: the shipped plan's
V = {name: texts_version(files) for name, files in TEXTS.items()}
BROKEN = {V["X"]}  # a version whose texts the loader refuses


def row(aid: str, texts: str, against: str | None, *, version: str | None = None, back: str | None = None) -> PlanAdopted:
    """Adoption `aid` of texts `texts`, written against `against` (a name of TEXTS, or a literal version)."""
    return PlanAdopted(id=aid, version=version or V[texts], files=TEXTS[texts], adopted_by="预案管理科 王某",
                       adopted_at=AT + timedelta(minutes=len(aid)), reason="试行修订",
                       previous_version=V.get(against, against) if against is not None else None, rollback_of=back)


def refusal(a: PlanAdopted) -> str | None:
    return "grading.yaml, line 3: families: field required" if a.version in BROKEN else None


# (adoptions in log order, the one in force (None: the shipped plan), {refused id: (kind, words of its reason)})
CASES = {
    "in order: each written against the one before": (
        [row("a1", "A", "S"), row("a2", "B", "A"), row("a3", "C", "B")], "a3", {}),
    "stale: two written against the same version, the second refused": (
        [row("a1", "A", "S"), row("a2", "B", "S")], "a1",
        {"a2": (Refusal.CONFLICT, f"written against version {V['S']} while {V['A']} was in force")}),
    "stale after a refusal: written against the refused one": (
        [row("a1", "A", "S"), row("a2", "B", "S"), row("a3", "C", "B")], "a1",
        {"a2": (Refusal.CONFLICT, "while"), "a3": (Refusal.CONFLICT, f"against version {V['B']} while {V['A']}")}),
    "the first adoption is checked against no shipped version (a deploy moves it)": (
        [row("a1", "A", "0123456789ab"), row("a2", "B", "A")], "a2", {}),
    "rollback to the shipped texts, then adopted again over it": (
        [row("a1", "A", "S"), row("r1", "S", "A", back=SHIPPED), row("a2", "A", "S")], "a2", {}),
    "rollback written against a version no longer in force": (
        [row("a1", "A", "S"), row("a2", "B", "A"), row("r1", "S", "A", back="a1")], "a2",
        {"r1": (Refusal.CONFLICT, f"while {V['B']} was in force")}),
    "ABA: written against a version in force again after a rollback takes effect": (
        [row("a1", "A", "S"), row("r1", "S", "A", back=SHIPPED), row("a2", "B", "S")], "a2", {}),
    "duplicate id: a retried send counted once": (
        [row("a1", "A", "S"), row("a1", "A", "S"), row("a2", "B", "A")], "a2", {}),
    "refused texts: they do not load, the plan in force stays": (
        [row("a1", "A", "S"), row("x1", "X", "A")], "a1", {"x1": (Refusal.TEXTS, "grading.yaml, line 3")}),
    "refused texts: not the version the record says": (
        [row("a1", "A", "S", version=V["B"])], None, {"a1": (Refusal.TEXTS, f"its texts are version {V['A']}")}),
    "written against a refused adoption's version: a conflict": (
        [row("a1", "A", "S"), row("x1", "X", "A"), row("a2", "B", "X")], "a1",
        {"x1": (Refusal.TEXTS, "line 3"), "a2": (Refusal.CONFLICT, f"against version {V['X']} while {V['A']}")}),
    "naming no version it replaces": (
        [row("a1", "A", None)], None, {"a1": (Refusal.CONFLICT, "names no version")}),
    "nothing adopted: the shipped plan": ([], None, {}),
}


@pytest.mark.parametrize("adoptions, in_force, refused", CASES.values(), ids=CASES.keys())
def test_the_fold(adoptions, in_force, refused):
    ruling = rule(adoptions, shipped=V["S"], refusal=refusal)
    assert (ruling.adoption.id if ruling.adoption else None) == in_force
    assert ruling.version == (ruling.adoption.version if ruling.adoption else V["S"])
    assert {aid: r.kind for aid, r in ruling.refused.items()} == {aid: kind for aid, (kind, _) in refused.items()}
    for aid, (_, words) in refused.items():
        assert words in ruling.refused[aid].reason, ruling.refused[aid]
    assert [a.id for a in ruling.records] == list(dict.fromkeys(a.id for a in adoptions))  # each id once, in order


def test_the_same_log_read_at_any_point_decides_the_same():
    """A reader that folds as records come and one that folds them all at once agree (every replica does one or
    the other): a record read later never changes what was decided before it."""
    log = [row("a1", "A", "S"), row("a2", "B", "S"), row("x1", "X", "A"), row("a3", "C", "A"), row("r1", "A", "C")]
    whole = rule(log, shipped=V["S"], refusal=refusal)
    for n in range(len(log) + 1):
        prefix = rule(log[:n], shipped=V["S"], refusal=refusal)
        assert {k: v for k, v in whole.refused.items() if k in {a.id for a in log[:n]}} == dict(prefix.refused)


def test_the_loader_is_asked_only_of_adoptions_the_check_takes():
    asked: list[str] = []
    rule([row("a1", "A", "S"), row("a2", "B", "S"), row("a3", "C", "A")], shipped=V["S"],
         refusal=lambda a: asked.append(a.id))
    assert asked == ["a1", "a3"]


def test_a_rollback_goes_back_to_texts_that_took_effect():
    ruling = rule([row("a1", "A", "S"), row("a2", "B", "S"), row("a3", "C", "A")], shipped=V["S"])
    assert rollback_source(ruling, V["A"]).id == "a1"
    assert rollback_source(ruling, V["B"]) is None  # refused: never in force, nothing to go back to


def test_the_digest_is_the_loaders():
    texts = {p.name: p.read_bytes().decode("utf-8") for p in DATA_DIR.glob("*.yaml")}
    assert texts_version(texts) == load_plan().version
