"""Phase `whatif` (issue 24 item 2): a what-if replay of history, the busy-night scenario and a synthetic
year, under the plan in force and a revision; target 1,000 simulated hours per second, and a year of
20,000 incidents compared in under a minute.

A phase of `make bench` (`measure(ctx)`, rows `whatif.night.*` and `whatif.year*.*`; the smoke run's year
is 200 incidents) and standalone (`make bench-whatif`, `python -m tests.bench.whatif`, options below).
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from playbooks.drill.scenario import load_scenario
from playbooks.engine import decide
from playbooks.plan import DATA_DIR, Plan, load_plan
from playbooks.whatif import History, load_revision, scenario_history, what_if
from services.whatif import compare_parallel
from topics.models import (
    EndRecorded,
    FollowupFacts,
    Grade,
    IncidentCommand,
    IncidentReported,
    ReportFacts,
    ReportFiled,
    ReportKind,
)

BUSY_NIGHT = DATA_DIR.parent / "drill" / "scenarios" / "busy-night.yaml"
YEAR_START = datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=8)))

# The revisions asked about: one every incident feels (a deadline shortened: each is replayed twice), one few
# feel (a type's lead unit moved: most are replayed once), and the plan itself under another version.
REVISIONS = {
    "deadline": ("obligations.yaml", "due_after_minutes: 10\n    remind_before_minutes: 5\n",
                 "due_after_minutes: 5\n    remind_before_minutes: 2\n"),
    "lead_unit": ("incident_types.yaml",
                  "    lead_units: [district_urban_management_commission]\n    lead_units_open_ended: false\n"
                  "    grading_family: production_safety\n  - id: heating_accident",
                  "    lead_units: [district_housing_construction_commission]\n    lead_units_open_ended: false\n"
                  "    grading_family: production_safety\n  - id: heating_accident"),
    "same": ("grading.yaml", "", "# the same plan under another version\n"),
}


def revision(name: str, into: Path) -> Plan:
    file, old, new = REVISIONS[name]
    data = into / name
    shutil.copytree(DATA_DIR, data)
    text = (data / file).read_text(encoding="utf-8")
    (data / file).write_text(text.replace(old, new, 1) if old else text + new, encoding="utf-8")
    return load_revision(data)


def synthetic_year(plan: Plan, incidents: int = 20_000, *, seed: int = 24) -> History:
    """A year of live incidents as the log would hold them: each type of table 2.3.6, any street, a few
    casualties now and then; the phone report mostly on time (some late, some never), the written and
    detailed reports, a follow-up for one in ten, the end for most, by the authority its grade needs."""
    rng = random.Random(seed)
    types = plan.table_types
    streets = sorted(plan.streets)
    records: list = []
    span = 365 * 24 * 3600
    for n in range(incidents):
        iid = f"y{n:05d}"
        received = YEAR_START + timedelta(seconds=rng.randrange(span))
        itype = rng.choice(types)
        facts = {}
        roll = rng.random()
        if roll < 0.2:
            facts["injuries"] = rng.randint(1, 6)
        elif roll < 0.25:
            facts["deaths"] = rng.randint(1, 4)
        report = ReportFacts(report_id=iid, type=itype.id, occurred_at=received - timedelta(minutes=rng.randint(1, 30)),
                             received_at=received, location={"street": rng.choice(streets)}, facts=facts,
                             flags={"multi_agency": rng.random() < 0.1})
        records.append((received, IncidentReported(id=iid, incident_id=iid, report=report, accepted_at=received)))
        lead = itype.lead_units[0]

        def filed(kind: ReportKind, minutes: float, **extra) -> None:
            at = received + timedelta(minutes=minutes)
            cid = f"{iid}.{kind.value}.{len(records)}"
            body = ReportFiled(id=cid, incident_id=iid, kind=kind, unit_id=lead, filed_at=at, filed_by="值班员", **extra)
            records.append((at, IncidentCommand(id=cid, incident_id=iid, body=body)))

        roll = rng.random()
        if roll < 0.95:
            filed(ReportKind.PHONE_REPORT, rng.uniform(2, 9) if roll < 0.8 else rng.uniform(10, 25))
        filed(ReportKind.WRITTEN_REPORT, rng.uniform(20, 75))
        if rng.random() < 0.8:
            filed(ReportKind.DETAILED_REPORT, rng.uniform(40, 130))
        if rng.random() < 0.1:
            filed(ReportKind.FOLLOWUP, rng.uniform(60, 180),
                  followup=FollowupFacts(facts={**facts, "injuries": facts.get("injuries", 0) + rng.randint(0, 5)}))
        if rng.random() < 0.8:
            ended = received + timedelta(hours=rng.uniform(2, 12))
            grade = decide(report, plan, received).grade
            authority = "district_committee" if grade in (Grade.GENERAL, Grade.UNDETERMINED) else "city"
            cid = f"{iid}.end"
            body = EndRecorded(id=cid, incident_id=iid, authority=authority, decided_by="区应急委", ended_at=ended,
                               recorded_by="值班员")
            records.append((ended, IncidentCommand(id=cid, incident_id=iid, body=body)))
    records.sort(key=lambda r: r[0])
    return History(start=YEAR_START, until=YEAR_START + timedelta(days=365), records=records)


def _time(history: History, plan: Plan, revised: Plan, *, runs: int = 1, profile: Path | None = None,
          baseline: dict | None = None):
    """Best wall time of `runs`, and that run's CPU time (the machine is shared: CPU says what the replay
    cost, wall what the asker waited)."""
    prof = cProfile.Profile() if profile else None
    best, cpu = float("inf"), 0.0
    report = None
    for _ in range(runs):
        if prof:
            prof.enable()
        start, start_cpu = time.perf_counter(), time.process_time()
        report = what_if(history, plan, revised, baseline=baseline)
        wall = time.perf_counter() - start
        if wall < best:
            best, cpu = wall, time.process_time() - start_cpu
        if prof:
            prof.disable()
    if prof and profile:
        prof.dump_stats(str(profile))
    return best, cpu, report


def _row(history: str, revision: str, report, wall: float, cpu: float, hours: float) -> dict:
    return {"history": history, "revision": revision, "incidents": report.totals.incidents,
            "replayed_twice": report.totals.replayed_twice, "differing": report.totals.differing,
            "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "sim_hours_per_s": round(hours / wall, 1),
            "sim_hours_per_cpu_s": round(hours / cpu, 1) if cpu else None}


def run(incidents: int = 20_000, *, profile_dir: Path | None = None, night_runs: int = 5, workers: int = 2) -> list[dict]:
    plan = load_plan()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        revised = {name: revision(name, Path(tmp)) for name in REVISIONS}
        night = scenario_history(load_scenario(BUSY_NIGHT, plan), plan)
        night_hours = (night.until - night.start).total_seconds() / 3600
        what_if(night, plan, revised["deadline"])  # warm the engine's memos, as a second question would find them
        for name, rev in revised.items():
            wall, cpu, report = _time(night, plan, rev, runs=night_runs,
                                      profile=profile_dir / f"whatif-night-{name}.prof" if profile_dir else None)
            rows.append(_row("busy-night", name, report, wall, cpu, night_hours))
        baseline: dict = {}
        _time(night, plan, revised["deadline"], baseline=baseline)
        for name, rev in revised.items():  # a page asking again: the plan in force's outcomes kept
            wall, cpu, report = _time(night, plan, rev, runs=night_runs, baseline=baseline)
            rows.append(_row("busy-night, asked again", name, report, wall, cpu, night_hours))
        year = synthetic_year(plan, incidents)
        year_hours = (year.until - year.start).total_seconds() / 3600
        label = f"year ({incidents} incidents, {len(year.records)} records)"
        baseline = {}
        for name in ("deadline", "lead_unit"):
            wall, cpu, report = _time(year, plan, revised[name], baseline=baseline if name == "deadline" else None,
                                      profile=profile_dir / f"whatif-year-{name}.prof" if profile_dir else None)
            rows.append(_row(label, name, report, wall, cpu, year_hours))
        for name in ("lead_unit", "same"):
            wall, cpu, report = _time(year, plan, revised[name], baseline=baseline)
            rows.append(_row(label + ", asked again", name, report, wall, cpu, year_hours))
        for name in ("deadline", "lead_unit"):  # `yingji whatif`'s way: a process a core (CPU: the parent's only)
            start = time.perf_counter()
            report = compare_parallel(year, plan, revised[name], workers=workers)
            wall = time.perf_counter() - start
            rows.append(_row(label + f", {workers} processes", name, report, wall, 0.0, year_hours))
    return rows


def _key(history: str) -> str:
    """A row's name part: night or year, asked the first time, again (the plan in force's outcomes kept), or
    shared among processes as `yingji whatif` does."""
    base = "night" if history.startswith("busy-night") else "year"
    return base + ("-again" if "asked again" in history else "-processes" if "processes" in history else "")


def measure(ctx) -> None:
    """The harness's entry point (tests/bench/harness.Context): one row per history and revision; the night's
    in simulated hours a second (target 1,000), the year's in seconds (target under a minute)."""
    from tests.bench.harness import Row

    for r in run(ctx.sizes.whatif_incidents, profile_dir=ctx.profile_dir, night_runs=1 if ctx.smoke else 5):
        name = f"whatif.{_key(r['history'])}.{r['revision']}"
        if name.startswith("whatif.night"):
            ctx.rows.append(Row(name, r["sim_hours_per_s"], "sim-h/s", ">= 1000", r["sim_hours_per_s"] >= 1000, r))
        else:
            ctx.rows.append(Row(name, r["wall_s"], "s", "< 60", r["wall_s"] < 60, r))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.whatif", description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=20_000, help="the synthetic year's incidents")
    parser.add_argument("--profile", type=Path, help="write cProfile files here and print the top functions")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    rows = run(args.incidents, profile_dir=args.profile)
    load_after = os.getloadavg()
    if args.json:
        print(json.dumps({"rows": rows, "loadavg_before": load_before, "loadavg_after": load_after}, ensure_ascii=False))
    else:
        print(f"load average before {load_before[0]:.1f} / {load_before[1]:.1f}, after {load_after[0]:.1f} / "
              f"{load_after[1]:.1f} (1 / 5 min; two cores shared with other runs)")
        for r in rows:
            print(f"{r['history']:<50} {r['revision']:<10} {r['incidents']:>6} incidents, {r['replayed_twice']:>6} "
                  f"replayed twice, {r['differing']:>6} differ: {r['wall_s']:>8} s ({r['cpu_s']} s CPU), "
                  f"{r['sim_hours_per_s']:>8} sim-h/s" + (f" ({r['sim_hours_per_cpu_s']} per CPU s)" if r['cpu_s'] else ""))
    if args.profile:
        for prof in sorted(args.profile.glob("whatif-year-deadline.prof")):
            print(f"\n{prof.name}: top functions by own time")
            pstats.Stats(str(prof)).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
