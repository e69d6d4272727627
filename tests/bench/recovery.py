"""Phase `recovery`: every worker SIGKILLed while holding many open incidents, then started again;
targets: serving again within 10 s, the table recovered and the due schedule rebuilt within 10 s."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Iterator

from playbooks.lifecycle import start
from playbooks.plan import load_plan
from services.local.kafka import rss_bytes
from services.worker.table_codec import encode_state, head_of
from tests.bench.harness import (Context, Phase, PySpy, Row, epoch, now_utc, probe, say, start_producer, until,
                                 warm_up, worker_settings)
from tests.bench.reports import generate_reports, reported
from tests.bench.seeding import ingest, seed_changelog, start_and_recover


def _recovery_states(n: int, *, plan, prefix: str) -> Iterator[tuple[str, bytes]]:
    """IncidentState values from playbooks.lifecycle.start for 104 reports (every type, mixed facts), each
    reused with the incident id substituted: the bytes the worker would hold, 100,000 in seconds."""
    now = now_utc()
    templates = []
    for report in generate_reports(104, plan=plan, now=now, prefix=f"{prefix}T", seed=10):
        state = start(reported(report, now), plan, now).state
        templates.append((report.report_id, encode_state(state, head_of(state, plan)).decode()))
    for i in range(n):
        tmpl_id, body = templates[i % len(templates)]
        iid = f"{prefix}{i:07d}"
        yield iid, body.replace(tmpl_id, iid).encode()


def measure(ctx: Context) -> None:
    plan = load_plan()
    n = ctx.sizes.recovery_incidents
    with Phase(ctx, "recovery") as phase:
        settings = worker_settings(phase)
        prefix = f"r-{phase.run}-"
        phase.start_workers()

        async def run() -> dict[str, Any]:
            producer = await start_producer(phase.bootstrap)
            try:
                await warm_up(producer, phase.bootstrap)  # group joined; the table's changelog exists
                if ctx.seed == "changelog":
                    phase.stack.kill_workers()
                    seed = await seed_changelog(producer, phase, _recovery_states(n, plan=plan, prefix=prefix))
                    say(f"recovery: seeded {seed}; starting the worker on it")
                    started, line = await start_and_recover(phase, n)  # recovers the seeded table
                    seed["cold_start_s"] = round(epoch(line["timestamp"]) - started, 1)
                    say(f"recovery: worker holds {line['incidents']} incidents ({seed['cold_start_s']}s)")
                else:
                    reports = generate_reports(n, plan=plan, now=now_utc(), prefix=prefix, seed=12)
                    accepted = now_utc()
                    records = [(r.report_id.encode(), reported(r, accepted).model_dump_json().encode())
                               for r in reports]
                    seed = {"ingest_s": round(await ingest(producer, phase.bootstrap, records, max(600, n / 20)), 1)}
                await probe(phase, plan, producer, f"{prefix}before")
                say("recovery: probe decided; SIGKILL and restart")
                await asyncio.sleep(2)  # the probe's table write is on the changelog
                rss = sum(rss_bytes(p.pid) for p in phase.stack.workers)
                phase.stack.kill_workers()  # SIGKILL: no shutdown, no final commit
                marks = phase.log_marks()
                restarted = time.time()
                phase.stack.start_workers()
                with PySpy(ctx, phase.stack.worker.pid, "recovery-worker-restart"):
                    served = await probe(phase, plan, producer, f"{prefix}after")  # produced at once: waits while the worker recovers
                    say(f"recovery: serving again after {served - restarted:.1f}s")
                    if not await until(lambda: phase.rebuilt(marks, n + 1) is not None, 600, step=0.1):
                        raise RuntimeError(f"restarted workers never logged schedule_rebuilt with incidents>={n + 1}")
                line = phase.rebuilt(marks, n + 1)
            finally:
                await producer.stop()
            return {"seed": seed, "rss": rss, "serve_s": served - restarted,
                    "tables_s": epoch(line["timestamp"]) - restarted, "incidents_logged": line["incidents"]}

        res = asyncio.run(run())
    common = {"open_incidents": res["incidents_logged"], "seed": ctx.seed, "seeding": res["seed"],
              "kill": "SIGKILL of every worker (LocalStack.kill_workers)",
              "workers_rss_mb_before_kill": round(res["rss"] / 1e6),
              "worker": settings}
    ctx.rows.append(Row("recovery.serve_s", res["serve_s"], "s", "<= 10", res["serve_s"] <= 10, {
        **common, "measured": "restart -> decision received for a report produced at the restart"}))
    ctx.rows.append(Row("recovery.tables_s", res["tables_s"], "s", "<= 10", res["tables_s"] <= 10, {
        "open_incidents": res["incidents_logged"],
        "measured": "restart -> worker logs schedule_rebuilt (table recovered, due schedule rebuilt)"}))
