"""Generated reports for the benchmarks: all 52 types of table 2.3.6, mixed facts and flags."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from topics.models import Facts, Flags, IncidentReported, Location, ReportFacts


def generate_reports(n: int, *, plan, now: datetime, prefix: str, seed: int = 8) -> list[ReportFacts]:
    """n reports cycling through every type of table 2.3.6 (by id or Chinese name), facts from none to
    past the 特别重大 thresholds, flags, streets and key areas mixed; deterministic for a seed."""
    rng = random.Random(seed)
    types = plan.table_types
    streets = list(plan.streets)
    out = []
    for i in range(n):
        itype = types[i % len(types)]
        scale = rng.choice([0, 0, 0, 1, 1, 2, 3])  # none, minor, serious, catastrophic
        facts = Facts(
            deaths=rng.choice([[0], [0, 1, 2], [3, 5, 9], [10, 30, 40]][scale]),
            injuries=rng.choice([[0], [1, 5], [10, 40], [60, 120]][scale]),
            serious_injuries=rng.choice([[0], [0, 2], [10, 30], [50, 100]][scale]),
            evacuated=rng.choice([[0], [0, 30], [100, 3000], [10000, 50000]][scale]),
            direct_loss_yuan=rng.choice([[0], [1e4, 5e5], [1e7, 5e7], [1e8, 5e8]][scale]),
            magnitude=rng.choice([None, None, 4.2, 5.5, 6.5]) if itype.grading_family == "earthquake" else None,
        )
        flags = Flags(sensitive=rng.random() < 0.1, major_event=rng.random() < 0.05,
                      multi_agency=rng.random() < 0.2, may_escalate=rng.random() < 0.1,
                      foreign_involved=rng.random() < 0.03)
        location = Location(street=rng.choice([*streets, None]),
                            key_area=rng.choice([[], [], [], ["城市副中心"], ["行政办公区"], ["人员密集场所"]]))
        received = now - timedelta(seconds=rng.randint(0, 60))
        asserted = rng.random() < 0.05
        out.append(ReportFacts(
            report_id=f"{prefix}{i:07d}", type=itype.id if i % 2 else itype.name,
            occurred_at=received - timedelta(minutes=rng.randint(1, 30)), received_at=received,
            location=location, facts=facts, flags=flags,
            asserted_grade=rng.choice(["一般", "较大"]) if asserted else None,
            asserted_by="区应急办" if asserted else None, source="bench",
        ))
    return out


def reported(report: ReportFacts, accepted_at: datetime) -> IncidentReported:
    return IncidentReported(id=report.report_id, incident_id=report.report_id, report=report, accepted_at=accepted_at)
