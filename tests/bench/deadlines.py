"""Phase `deadlines`: breach detection with the workers holding many open obligations, a third of
them falling due within one window; target p99 detection lag <= 1 s. A new report produced halfway
through the window shows what the breaches cost a duty officer."""

from __future__ import annotations

import asyncio
import json
import math
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from playbooks.lifecycle import start
from playbooks.plan import load_plan
from services.worker.table_codec import encode_state, head_of
from tests.bench.harness import (Context, Phase, PySpy, Row, Tap, cpu_seconds, epoch, now_utc, percentile, probe, say,
                                 start_producer, until, warm_up, worker_settings)
from tests.bench.reports import reported
from tests.bench.seeding import ingest, seed_changelog, start_and_recover
from topics.catalog import ESCALATIONS
from topics.models import ReportFacts

DEADLINE_RATE_FALLBACK = 50.0  # incidents/s assumed for `--seed produce` when `pipeline` did not run first


def measure(ctx: Context) -> None:
    plan = load_plan()
    n_inc = math.ceil(ctx.sizes.open_obligations / 3)  # each incident opens 3; counted below from the states
    window = ctx.sizes.deadline_window_s
    types = plan.table_types
    seeded = ctx.seed == "changelog"
    with Phase(ctx, "deadlines") as phase:
        settings = worker_settings(phase)
        phase.start_workers()
        prefix = f"d-{phase.run}-"
        breaches: list[tuple[float, float, float, str]] = []
        drain_s = 120.0  # after the window closes, breaches still missing count as "at least this late"

        def on_breach(msg, received: float) -> None:
            if msg.key.startswith(prefix.encode()):
                body = json.loads(msg.value)
                if body["kind"] == "breach":
                    breaches.append((body["details"]["detection_lag_s"], epoch(body["recorded_at"]) - epoch(body["at"]),
                                     received - epoch(body["at"]), body["obligation"], body["incident_id"]))

        async def run() -> dict[str, Any]:
            producer = await start_producer(phase.bootstrap)
            try:
                await warm_up(producer, phase.bootstrap)  # group joined; the table's changelog exists
                # The window must open after the worker holds every incident: seeding and recovery take
                # about 2 ms per incident here; ingest through the worker goes at the pipeline's rate.
                lead = 15 + n_inc * 0.002 if seeded else 15 + 1.5 * n_inc / (ctx.pipeline_rate or DEADLINE_RATE_FALLBACK)
                t0 = time.time() + lead
                accepted = now_utc()
                reports = []
                for i in range(n_inc):
                    due = datetime.fromtimestamp(t0 + window * i / n_inc, timezone.utc)
                    received = due - timedelta(minutes=10)  # phone_report: due 10 minutes after receipt
                    reports.append(reported(ReportFacts(
                        report_id=f"{prefix}{i:07d}", type=types[i % len(types)].id,
                        occurred_at=received - timedelta(minutes=5), received_at=received, source="bench"), accepted))
                open_obligations = due_in_window = 0
                states = []
                for rec in reports:
                    state = start(rec, plan, now_utc()).state
                    open_obligations += sum(o.pending for o in state.obligations.values())
                    # less a microsecond: a datetime rounds the window's first due time to one
                    due_in_window += sum(t0 - 1e-6 <= o.obligation.due_at.timestamp() < t0 + window
                                         for o in state.obligations.values() if o.pending)
                    if seeded:
                        states.append((rec.incident_id, encode_state(state, head_of(state, plan))))
                async with Tap(phase.bootstrap, [(ESCALATIONS.name, ESCALATIONS.partitions)], on_breach):
                    if seeded:
                        phase.stack.kill_workers()
                        seed = await seed_changelog(producer, phase, iter(states))
                        del states
                        say(f"deadlines: seeded {seed}; starting the worker on it")
                        _started, line = await start_and_recover(phase, n_inc)
                        ready = epoch(line["timestamp"])
                    else:
                        records = [(r.incident_id.encode(), r.model_dump_json().encode()) for r in reports]
                        seed = {"ingest_s": round(await ingest(producer, phase.bootstrap, records, lead + window), 1)}
                        ready = time.time()
                    say(f"deadlines: worker holds {open_obligations} open obligations, "
                        f"{t0 - time.time():.1f}s before the window opens")

                    async def probe_mid_window() -> float:
                        """A duty officer's new report while the breaches fall due: seconds to its decision."""
                        await asyncio.sleep(max(0.0, t0 + window / 2 - time.time()))
                        sent = time.time()
                        return await probe(phase, plan, producer, f"{prefix}probe") - sent

                    probing = asyncio.create_task(probe_mid_window())
                    await asyncio.sleep(max(0.0, t0 - time.time()))
                    cpu_open = {"broker": cpu_seconds(phase.stack.broker.pid), "workers": phase.worker_cpu_s()}
                    with PySpy(ctx, phase.stack.worker.pid, "deadlines-worker-window"):
                        await until(lambda: len(breaches) >= due_in_window,
                                     max(1.0, t0 + window + drain_s - time.time()))
                    cpu = {"broker": cpu_seconds(phase.stack.broker.pid) - cpu_open["broker"],
                           "workers": phase.worker_cpu_s() - cpu_open["workers"]}
                    new_report_s = await probing
                    await asyncio.sleep(1)  # a repeated breach would arrive here
                    cut_off = time.time()
            finally:
                await producer.stop()
            return {"t0": t0, "ready": ready, "seed": seed, "open": open_obligations, "due": due_in_window,
                    "new_report_s": new_report_s, "cpu": cpu,
                    "cut_off": cut_off, "due_times": [t0 + window * i / n_inc for i in range(n_inc)]}

        res = asyncio.run(run())
    phone = [b for b in breaches if b[3] == "phone_report"]
    seen_ids = len(phone)
    slack = res["t0"] - res["ready"]
    missing = max(0, res["due"] - seen_ids)
    # A breach not seen by the cut-off was detected at least (cut-off - its due time) late: with those
    # lower bounds in, a percentile is a lower bound of the true one, never an optimistic figure.
    latest_due = sorted(res["due_times"])[seen_ids:] if missing else []
    bounds = [res["cut_off"] - d for d in latest_due]
    common = {
        "incidents": n_inc, "open_obligations": res["open"],
        "obligations": "each incident opens phone_report, written_report and detailed_report (all open at the "
                       "window start); only phone_report (received_at + 10 min) falls due in the window",
        "falling_due_in_window": res["due"], "window_s": window, "spread": "due times uniform over the window",
        "seed": ctx.seed, "seeding": res["seed"], "worker_ready_before_window_s": round(slack, 1),
        "breaches_received": seen_ids, "drain_s": drain_s, "sweep_interval_s": 0.1, "worker": settings}
    notes = []
    if slack < 0:
        notes.append(f"worker ready {-slack:.1f}s after the window opened: lags include that")
    if missing:
        notes.append(f"{missing} of {res['due']} breaches not seen {drain_s:.0f}s after the window: "
                     f"figures are lower bounds")
    repeats = seen_ids - len({b[4] for b in phone})
    if repeats:
        notes.append(f"{repeats} breaches repeated (the same incident's phone_report twice)")
    if len({b[4] for b in phone}) > res["due"]:
        notes.append(f"{len({b[4] for b in phone}) - res['due']} more incidents breached than counted due in "
                     f"the window (a due time on its edge)")
    note = "; ".join(notes)
    lags = [b[0] for b in phone] + bounds or [float("nan")]
    recorded = [b[1] for b in phone] + bounds or [float("nan")]
    visible = [b[2] for b in phone] + bounds or [float("nan")]
    lag_m = {"measured": "breach details.detection_lag_s"}
    ctx.rows.append(Row("deadlines.open_obligations", float(res["open"]), "obligations", "", None, common, note))
    ctx.rows.append(Row("deadlines.lag_p50", percentile(lags, 50), "s", "", None, lag_m, note))
    p99 = percentile(lags, 99)
    ctx.rows.append(Row("deadlines.lag_p99", p99, "s", "<= 1", p99 <= 1 and not notes, lag_m, note))
    ctx.rows.append(Row("deadlines.lag_max", max(lags), "s", "", None, lag_m, note))
    ctx.rows.append(Row("deadlines.recorded_minus_at_p99", percentile(recorded, 99), "s", "", None, {
        "measured": "breach recorded_at - at", "p50": round(percentile(recorded, 50), 3),
        "max": round(max(recorded), 3)}, note))
    ctx.rows.append(Row("deadlines.visible_lag_p99", percentile(visible, 99), "s", "", None, {
        "measured": "harness receives the breach (escalations topic) - at", "p50": round(percentile(visible, 50), 3),
        "max": round(max(visible), 3)}, note))
    per_breach = {name: 1000 * secs / max(1, seen_ids) for name, secs in res["cpu"].items()}
    ctx.rows.append(Row("deadlines.worker_cpu_per_breach", per_breach["workers"], "ms", "", None, {
        "measured": "the workers' CPU (user+system, /proc, all worker processes) from the window's opening to the "
                    "last breach received, per breach", "broker_ms": round(per_breach["broker"], 2),
        "workers_cpu_s": round(res["cpu"]["workers"], 1), "broker_cpu_s": round(res["cpu"]["broker"], 1),
        "worker_processes": settings.get("worker_processes")}))
    ctx.rows.append(Row("deadlines.new_report_s", res["new_report_s"], "s", "", None, {
        "measured": "a new report produced halfway through the window -> its decision received"}))
