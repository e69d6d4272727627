"""Phase `drills`: drill evaluation in-process, the busiest scenario replayed and scored again and
again; target 1,000 simulated hours per second."""

from __future__ import annotations

import cProfile
import time

from playbooks.drill.evaluation import evaluate
from playbooks.drill.scenario import load_scenario
from playbooks.plan import load_plan
from services.settings import REPO_ROOT
from tests.bench.harness import Context, Row

BUSIEST_SCENARIO = REPO_ROOT / "playbooks" / "drill" / "scenarios" / "busy-night.yaml"


def measure(ctx: Context) -> None:
    plan = load_plan()
    scenario = load_scenario(BUSIEST_SCENARIO, plan)
    sim_hours = (scenario.end - scenario.start).total_seconds() / 3600
    prof = cProfile.Profile() if ctx.profile_dir else None
    if prof:
        prof.enable()
    runs, start = 0, time.perf_counter()
    while runs == 0 or time.perf_counter() - start < ctx.sizes.drill_seconds:
        evaluate(scenario, plan, run=f"bench{runs}")
        runs += 1
    elapsed = time.perf_counter() - start
    if prof:
        prof.disable()
        prof.dump_stats(str(ctx.profile_dir / "drills.prof"))
    rate = runs * sim_hours / elapsed
    ctx.rows.append(Row("drills.sim_hours", rate, "sim-h/s", ">= 1000", rate >= 1000, {
        "scenario": BUSIEST_SCENARIO.name, "injects": len(scenario.injects), "sim_hours_per_run": sim_hours,
        "runs": runs, "wall_s": round(elapsed, 3), "function": "playbooks.drill.evaluation.evaluate"}))
