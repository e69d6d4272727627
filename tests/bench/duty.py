"""Phase `duty` (issue 18): in-process, pure. Who is on duty for a notice, as the worker asks it for
every notice (address.DutyIndex over a window) beside the same answer expanded from the roster each
time (roster.on_duty alone); and a 30-day 值班表 of three units read and checked as an import is.
No target is given by the issue: the figures say what addressing adds to a notice."""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from playbooks.duty.address import DutyIndex, on_duty_ref
from playbooks.duty.change import apply_change, refused
from playbooks.duty.table import table_shifts
from playbooks.plan import load_plan
from tests.bench.harness import Context, Row
from topics.duty import Person, Roster, Rotation

SH = ZoneInfo("Asia/Shanghai")
UNITS = ("district_emergency_office", "district_urban_management_commission", "tongzhou_police")
ROLES = (None, "值班员", "值班领导", "值班主任", "分管区领导")


def _people() -> list[Person]:
    out = []
    for u, unit in enumerate(UNITS):
        for post, n in (("officer", 3), ("chief", 2), ("leader", 2)):
            out += [Person(id=f"{u}-{post}-{i}", name=f"人员{u}{post}{i}", unit_id=unit, post=post,
                           is_leader=post != "officer", employment="regular") for i in range(n)]
    return out


def _table(start: datetime, days: int) -> list[list[object]]:
    rows: list[list[object]] = [["日期", "单位", "带班领导", "值班主任", "值班员"]]
    for k in range(days):
        for u, unit in enumerate(UNITS):
            rows.append([(start + timedelta(days=k)).date().isoformat(), unit, f"{u}-leader-{k // 7 % 2}",
                         f"{u}-chief-{k % 2}", f"{u}-officer-{k % 3}"])
    return rows


def measure(ctx: Context) -> None:
    plan = load_plan()
    now = datetime.now(SH).replace(hour=12, minute=0, second=0, microsecond=0)
    start = (now - timedelta(days=1)).replace(hour=8, minute=30)
    people = _people()
    # a year-old 区应急办 rotation beside the 值班表: the walk an index saves grows with a rotation's age
    rotation = Rotation(id="r-year", unit_id=UNITS[0], post="chief", rrule="FREQ=DAILY",
                        dtstart=start - timedelta(days=365), people=[f"0-chief-{i}" for i in range(2)])
    base = Roster(people=people)
    rows = _table(start, 35)

    t0 = time.perf_counter()
    shifts = table_shifts(rows, unit_id=None, base=base, config=plan.duty, units=plan.unit_names)
    roster = apply_change(base, shifts=shifts)
    problems = refused(Roster(), roster, plan.duty, plan.unit_names, now)
    read_s = time.perf_counter() - t0
    assert not problems, problems
    ctx.rows.append(Row("duty.import_checked", read_s * 1000, "ms", "", None, {
        "rows": len(rows) - 1, "units": len(UNITS), "days": 35, "shifts": len(shifts),
        "what": "a 值班表's rows read (table_shifts) and every duty rule checked for the units touched",
        "process": "in-process, 1 thread"}))

    roster = roster.model_copy(update={"rotations": [rotation]})
    rnd = random.Random(18)
    asks = [(rnd.choice(UNITS + ("tongzhou_fire_rescue",)), rnd.choice(ROLES),
             now + timedelta(seconds=rnd.uniform(-86_400, 86_400))) for _ in range(ctx.sizes.duty_notices)]
    t0 = time.perf_counter()
    index = DutyIndex(roster, now - timedelta(days=2), now + timedelta(days=7))
    indexed = [on_duty_ref(roster, plan.duty, u, r, at, index) for u, r, at in asks]
    with_index = len(asks) / (time.perf_counter() - t0)
    sample = asks[: max(1, len(asks) // 10)]  # the slow way on a tenth: the same answers, more slowly
    t0 = time.perf_counter()
    plain = [on_duty_ref(roster, plan.duty, u, r, at) for u, r, at in sample]
    without = len(sample) / (time.perf_counter() - t0)
    assert [a.person_id for a in plain] == [a.person_id for a in indexed[: len(sample)]]
    sources: dict[str, int] = {}
    for a in indexed:
        sources[a.source] = sources.get(a.source, 0) + 1
    common = {"rotation_age_days": 365, "units_with_roster": len(UNITS), "process": "in-process, 1 thread"}
    ctx.rows.append(Row("duty.notices_addressed", with_index, "notices/s", "", None, {
        **common, "notices": len(asks), "sources": sources,
        "how": "address.DutyIndex (the worker's way: shifts of [-2 d, +7 d] expanded once)"}))
    ctx.rows.append(Row("duty.notices_addressed_unindexed", without, "notices/s", "", None, {
        **common, "notices": len(sample), "how": "roster.on_duty expanding every rotation per notice"}))
