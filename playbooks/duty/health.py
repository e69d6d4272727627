"""How well a unit's roster covers the coming days, as figures for the metrics and the alerts.

Pure: the roster, the units and `now` in; per unit the seconds of the next gap_horizon_days with a
required post unstaffed (the no_gap rule's measure), and the count of each duty rule's violations.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from playbooks.duty.config import DutyFile
from playbooks.duty.roster import shifts
from playbooks.duty.rules import check, uncovered
from topics.duty import Post, Roster


@dataclass(frozen=True)
class UnitHealth:
    gap_seconds: float
    violations: Counter = field(default_factory=Counter)  # rule id -> problems


def roster_health(roster: Roster, config: DutyFile, units: Collection[str], now: datetime,
                  all_units: Collection[str]) -> dict[str, UnitHealth]:
    """For each of `units`: gap seconds over [now, now + horizon) and violations by rule.

    A post is required when the unit stands 24-hour duty (值班员, 带班领导) or when its roster has
    that post at all (as rules.no_gap reads it)."""
    window = (now, now + timedelta(days=config.gap_horizon_days.value))
    in_force = shifts(roster, *window)
    problems = check(roster, config, all_units, now, only_units=set(units))
    out = {}
    for unit in units:
        required = {(Post.officer), (Post.leader)} if unit in config.twenty_four_hour_units.value else set()
        required |= {s.post for s in in_force if s.unit_id == unit}
        required |= {r.post for r in roster.rotations if r.unit_id == unit}
        gap = 0.0
        for post in required:
            covers = [(s.start, s.end) for s in in_force if s.unit_id == unit and s.post == post]
            gap += sum((b - a).total_seconds() for a, b in uncovered(window, covers))
        out[unit] = UnitHealth(gap, Counter(p.rule for p in problems if p.unit_id == unit))
    return out
