"""Phase `pipeline`: the worker's throughput and latency beside two bare processors on the same
broker (an aiokafka loop and a Faust agent with the worker's own configuration), started as
`python -m tests.bench --serve-baseline KIND` subprocesses, as many as the service has workers."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from kafka.admin import KafkaAdminClient, NewTopic

from playbooks.plan import load_plan
from services.local.stack import stop_group
from services.settings import get_settings
from services.worker.faust_app import build_app
from tests.bench.harness import (FAUST_KEYS, PRODUCER_SETTINGS, Context, Phase, PySpy, Row, Tap, epoch,
                                 faust_conf, now_utc, percentile, produce_all, say, start_producer, until,
                                 wait_for, warm_up, worker_settings)
from tests.bench.reports import generate_reports, reported
from topics.catalog import INCIDENTS_DECIDED, INCIDENTS_REPORTED, NOTIFICATIONS_REQUESTED

# Bench-only topics for the baselines (not part of the service, so not in the catalog).
BASELINE_TOPICS = {"aiokafka": ("bench.aiokafka.in", "bench.aiokafka.out"),
                   "faust": ("bench.faust.in", "bench.faust.out")}
PIPELINE_TIMEOUT_S = 300  # throughput over the decisions consumed by then, marked INCOMPLETE


def routing_notices(decision: dict) -> int:
    """Notifications start() sends for a decision: routing notices not waiting for approval, by key."""
    return len({(n["unit_id"], n["rule"]) for n in decision["notify"] if not n["after_approval"]})


async def _pipeline_throughput(bootstrap: str, records: list[tuple[bytes, bytes]], prefix: bytes,
                               timeout: float) -> dict[str, Any]:
    """N reports produced at once; time until every decision and its routing notifications are consumed."""
    n = len(records)
    got = {"decisions": 0, "notifications": 0, "expected_notifications": 0, "other_notifications": 0}

    def on_record(msg, _t: float) -> None:
        if msg.topic == INCIDENTS_DECIDED.name:
            if msg.key.startswith(prefix):
                got["decisions"] += 1
                got["expected_notifications"] += routing_notices(json.loads(msg.value)["decision"])
        elif msg.key.startswith(prefix) and b'"kind":"routing"' in msg.value:
            got["notifications"] += 1
        elif not msg.key.startswith(b"warm"):
            got["other_notifications"] += 1  # reminders etc. the worker sent meanwhile (due checks competing)

    def complete() -> bool:
        return got["decisions"] >= n and got["notifications"] >= got["expected_notifications"]

    producer = await start_producer(bootstrap)
    try:
        async with Tap(bootstrap, [(INCIDENTS_DECIDED.name, INCIDENTS_DECIDED.partitions),
                                   (NOTIFICATIONS_REQUESTED.name, NOTIFICATIONS_REQUESTED.partitions)], on_record):
            await asyncio.sleep(2)  # the tap has read what is already there (earlier phases)
            got.update(other_notifications=0)
            start = time.monotonic()
            await produce_all(producer, INCIDENTS_REPORTED.name, records)
            produced_s = time.monotonic() - start
            done = await until(complete, timeout)
            elapsed = time.monotonic() - start
    finally:
        await producer.stop()
    return {**got, "complete": done, "elapsed_s": elapsed, "produce_s": produced_s}


async def _pipeline_latency(bootstrap: str, plan, rate: float, seconds: float, prefix: str,
                            wait_s: float = 60) -> dict[str, Any]:
    """Reports offered at a steady rate; each one's latency from accepted_at to the harness receiving its
    IncidentDecided. One not decided wait_s after the last send counts as at least that late."""
    count = int(rate * seconds)
    reports = generate_reports(count, plan=plan, now=now_utc(), prefix=prefix, seed=9)
    accepted: dict[bytes, float] = {}
    latencies: dict[bytes, float] = {}
    key_prefix = prefix.encode()

    def on_record(msg, received: float) -> None:
        if msg.topic == INCIDENTS_DECIDED.name and msg.key.startswith(key_prefix):
            latencies[msg.key] = received - epoch(json.loads(msg.value)["accepted_at"])

    producer = await start_producer(bootstrap, linger_ms=0)
    behind = 0.0
    try:
        decided = [(INCIDENTS_DECIDED.name, INCIDENTS_DECIDED.partitions)]
        async with Tap(bootstrap, decided, on_record, from_end=True):
            loop = asyncio.get_running_loop()
            start = loop.time()
            futures = []
            for i, report in enumerate(reports):
                delay = start + i / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                behind = max(behind, -delay)
                rec = reported(report, now_utc())
                key = report.report_id.encode()
                accepted[key] = rec.accepted_at.timestamp()
                futures.append(await producer.send(INCIDENTS_REPORTED.name, key=key, value=rec.model_dump_json().encode()))
            await asyncio.gather(*futures)
            await until(lambda: len(latencies) >= count, wait_s)
            cut_off = time.time()
            values = list(latencies.values())
            bounds = [cut_off - t for k, t in accepted.items() if k not in latencies]
            # drain what is left, so the next measurement starts on an idle worker
            drained = await until(lambda: len(latencies) >= count, 300, step=0.1)
    finally:
        await producer.stop()
    return {"sent": count, "received": len(values), "latencies": values, "bounds": bounds,
            "producer_behind_s": behind, "drained": drained}


async def _baseline(phase: Phase, kind: str, records: list[tuple[bytes, bytes]], prefix: bytes,
                    timeout: float) -> dict[str, Any]:
    """Start a bare processor in a subprocess, warm it up, then time N records from produce to consumed."""
    src, dst = BASELINE_TOPICS[kind]
    _create_topics(phase.bootstrap, [src, dst], partitions=4)
    group = f"{phase.settings.app_id}-{kind}"
    # as many processes as the service has workers, so the ratio compares like with like
    procs = [phase.spawn(f"bare-{kind}-{i}", ["--serve-baseline", kind, "--bootstrap", phase.bootstrap, "--src", src, "--dst", dst,
                          "--app-id", group]) for i in range(phase.settings.worker_processes)]
    proc = procs[0]
    seen: dict[str, Any] = {"warm": False, "n": 0}

    def on_record(msg, _t: float) -> None:
        if msg.key == b"warm":
            seen["warm"] = True
        elif msg.key.startswith(prefix):
            seen["n"] += 1

    producer = await start_producer(phase.bootstrap)
    try:
        async with Tap(phase.bootstrap, [(dst, 4)], on_record):
            warm_start = time.monotonic()
            await producer.send_and_wait(src, key=b"warm", value=b"{}")
            if not await until(lambda: seen["warm"] or proc.poll() is not None, 120) or not seen["warm"]:
                raise RuntimeError(f"bare {kind} processor never passed a record through")
            if not await asyncio.to_thread(_group_has, phase.bootstrap, group, len(procs), 120):
                raise RuntimeError(f"bare {kind} processors: {len(procs)} never all in group {group}")
            warm_s = time.monotonic() - warm_start
            with PySpy(phase.ctx, proc.pid, f"pipeline-bare-{kind}"):
                start = time.monotonic()
                await produce_all(producer, src, records)
                done = await until(lambda: seen["n"] >= len(records), timeout)
                elapsed = time.monotonic() - start
    finally:
        await producer.stop()
        for p in procs:
            stop_group(p)
    return {"records": seen["n"], "complete": done, "elapsed_s": elapsed, "warm_up_s": warm_s,
            "processes": len(procs)}


def _group_has(bootstrap: str, group: str, members: int, timeout: float) -> bool:
    """The consumer group is Stable with `members` members (every process has its partitions)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-group-probe")

    def stable() -> bool:
        desc = admin.describe_groups([group]).get(group, {})
        return desc.get("group_state") == "Stable" and len(desc.get("members") or []) >= members

    try:
        return bool(wait_for(stable, timeout, step=0.2))
    finally:
        admin.close()


def _create_topics(bootstrap: str, names: list[str], partitions: int, timeout: float = 30) -> None:
    """Create bench-only topics and wait until every partition has a leader."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="yingji-bench")

    def led() -> bool:
        return all(len(t["partitions"]) == partitions
                   and all(p.get("leader_id", p.get("leader", -1)) >= 0 for p in t["partitions"])
                   for t in admin.describe_topics(names))

    try:
        admin.create_topics([NewTopic(n, partitions, 1) for n in names])
        if not wait_for(led, timeout, step=0.1):
            raise RuntimeError(f"topics {names} have no leaders after {timeout:.0f}s")
    finally:
        admin.close()


def measure(ctx: Context) -> None:
    """Baselines first (worker idle), then latency at a steady load, then throughput: N at once."""
    plan = load_plan()
    n = ctx.sizes.pipeline_incidents
    res: dict[str, Any] = {}
    try:
        with Phase(ctx, "pipeline") as phase:
            settings = worker_settings(phase)
            phase.start_workers()

            async def run() -> None:
                producer = await start_producer(phase.bootstrap)
                try:
                    res["warm_s"] = await warm_up(producer, phase.bootstrap)
                finally:
                    await producer.stop()
                prefix = f"p-{phase.run}-"
                reports = generate_reports(n, plan=plan, now=now_utc(), prefix=prefix)
                bare = [(f"b-{i:07d}".encode(), reported(r, now_utc()).model_dump_json().encode())
                        for i, r in enumerate(reports)]
                say(f"pipeline: bare aiokafka loop, {n} records")
                res["aio"] = await _baseline(phase, "aiokafka", bare, b"b-", timeout=max(60, n / 200))
                say(f"pipeline: bare Faust pass-through, {n} records")
                res["faust"] = await _baseline(phase, "faust", bare, b"b-", timeout=max(60, n / 100))
                say(f"pipeline: latency at {ctx.sizes.light_rate:g}/s for {ctx.sizes.light_seconds:g}s")
                res["light"] = await _pipeline_latency(phase.bootstrap, plan, ctx.sizes.light_rate,
                                                       ctx.sizes.light_seconds, f"m-{phase.run}-")
                say(f"pipeline: latency at {ctx.sizes.latency_rate:g}/s for {ctx.sizes.latency_seconds:g}s")
                with PySpy(ctx, phase.stack.worker.pid, "pipeline-worker-latency"):
                    res["lat"] = await _pipeline_latency(phase.bootstrap, plan, ctx.sizes.latency_rate,
                                                         ctx.sizes.latency_seconds, f"l-{phase.run}-")
                say(f"pipeline: throughput, {n} incidents")
                accepted = now_utc()  # reports received up to a minute ago: nothing of theirs falls due for 4 min
                records = [(r.report_id.encode(), reported(r, accepted).model_dump_json().encode()) for r in reports]
                with PySpy(ctx, phase.stack.worker.pid, "pipeline-worker-throughput"):
                    res["thr"] = await _pipeline_throughput(phase.bootstrap, records, prefix.encode(),
                                                            timeout=PIPELINE_TIMEOUT_S)

            asyncio.run(run())
    finally:
        _pipeline_rows(ctx, res, n, settings if "warm_s" in res else {})


def _pipeline_rows(ctx: Context, res: dict[str, Any], n: int, settings: dict[str, Any]) -> None:
    common = {"incidents": n, "producer": PRODUCER_SETTINGS, "worker": settings, "same_broker": True,
              "worker_warm_up_s": round(res.get("warm_s", float("nan")), 1)}
    rate = faust_rate = aio_rate = None
    if "thr" in res:
        thr = res["thr"]
        rate = thr["decisions"] / thr["elapsed_s"]
        ctx.pipeline_rate = rate
        note = "" if thr["complete"] else (f"INCOMPLETE: {thr['decisions']}/{n} decided, {thr['notifications']}/"
                                           f"{thr['expected_notifications']} notified in {PIPELINE_TIMEOUT_S}s")
        ctx.rows.append(Row("pipeline.throughput", rate, "incidents/s", "", None, {
            **common, "decisions": thr["decisions"], "routing_notifications": thr["notifications"],
            "expected_routing_notifications": thr["expected_notifications"],
            "other_notifications_meanwhile": thr["other_notifications"], "wall_s": round(thr["elapsed_s"], 2),
            "produce_s": round(thr["produce_s"], 2),
            "timed": "first produce -> every IncidentDecided and routing NotificationRequested consumed"}, note))
    if "aio" in res:
        aio = res["aio"]
        aio_rate = aio["records"] / aio["elapsed_s"]
        ctx.rows.append(Row("pipeline.bare_aiokafka", aio_rate, "records/s", "", None, {
            "records": n, "loop": "aiokafka getmany -> send each -> await the batch's acks -> commit (subprocess)",
            "producer": PRODUCER_SETTINGS, "wall_s": round(aio["elapsed_s"], 2), "processes": aio["processes"]},
            "" if aio["complete"] else f"INCOMPLETE: {aio['records']}/{n}"))
    if "faust" in res:
        fst = res["faust"]
        faust_rate = fst["records"] / fst["elapsed_s"]
        bare_conf = faust_conf(bare_faust_app("127.0.0.1:9", "bare"))
        differs = sorted(k for k in FAUST_KEYS if settings and bare_conf[k] != settings[k])
        ctx.rows.append(Row("pipeline.bare_faust", faust_rate, "records/s", "", None, {
            "records": n, "agent": "raw bytes pass-through, await topic.send (subprocess, own app id)",
            "faust": bare_conf, "settings_differing_from_worker": differs, "wall_s": round(fst["elapsed_s"], 2),
            "processes": fst["processes"]},
            "" if fst["complete"] else f"INCOMPLETE: {fst['records']}/{n}"))
    if rate is not None and faust_rate:
        ratio = rate / faust_rate
        ctx.rows.append(Row("pipeline.ratio_vs_bare_faust", ratio, "x", ">= 0.5", ratio >= 0.5, {
            "pipeline_incidents_per_s": round(rate, 1), "bare_faust_records_per_s": round(faust_rate, 1)}))
    if rate is not None and aio_rate:
        ctx.rows.append(Row("pipeline.ratio_vs_bare_aiokafka", rate / aio_rate, "x", "", None, {
            "pipeline_incidents_per_s": round(rate, 1), "bare_aiokafka_records_per_s": round(aio_rate, 1)}))
    if "light" in res:
        _latency_rows(ctx, res["light"], "pipeline.light_latency", ctx.sizes.light_rate, ctx.sizes.light_seconds,
                      target=False)
    if "lat" in res:
        _latency_rows(ctx, res["lat"], "pipeline.latency", ctx.sizes.latency_rate, ctx.sizes.latency_seconds,
                      target=True)


def _latency_rows(ctx: Context, lat: dict[str, Any], name: str, rate: float, seconds: float, *, target: bool) -> None:
    lat_settings = {"offered_rate_per_s": rate, "seconds": seconds,
                    "sent": lat["sent"], "received": lat["received"], "producer_linger_ms": 0,
                    "producer_behind_schedule_max_s": round(lat["producer_behind_s"], 3),
                    "measured": "harness receives IncidentDecided - the record's accepted_at (same clock)"}
    note = "" if not lat["bounds"] else (f"{len(lat['bounds'])}/{lat['sent']} not decided 60s after the last "
                                         f"send: counted at that age, figures are lower bounds")
    values = [v * 1000 for v in lat["latencies"] + lat["bounds"]] or [float("nan")]
    ctx.rows.append(Row(f"{name}_p50", percentile(values, 50), "ms", "", None, lat_settings, note))
    p99 = percentile(values, 99)
    ctx.rows.append(Row(f"{name}_p99", p99, "ms", f"<= 50 at {rate:g}/s" if target else "",
                        (p99 <= 50 and not note) if target else None, lat_settings, note))
    ctx.rows.append(Row(f"{name}_max", max(values), "ms", "", None, lat_settings, note))


# ---------------------------------------------------------------------------------------------
# the bare processors (`python -m tests.bench --serve-baseline KIND`, started by `_baseline`)


def bare_faust_app(bootstrap: str, app_id: str):
    """The worker's Faust configuration (services/worker/faust_app.py, the same function) and nothing
    else: no sensors, no tables, no static membership (several baseline processes share one group)."""
    settings = get_settings().model_copy(update={"bootstrap_servers": bootstrap})
    return build_app(settings, app_id=app_id, store="memory://", sensors=False, consumer_group_instance_id=None)


async def serve_aiokafka(bootstrap: str, src: str, dst: str, group: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(src, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024)
    await consumer.start()
    await producer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            futures = [await producer.send(dst, key=m.key, value=m.value) for msgs in batch.values() for m in msgs]
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def serve_faust(bootstrap: str, src: str, dst: str, app_id: str) -> None:
    import faust

    app = bare_faust_app(bootstrap, app_id)
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    source, sink = app.topic(src, **raw), app.topic(dst, **raw)

    @app.agent(source)
    async def passthrough(stream):
        async for event in stream.events():
            await sink.send(key=event.key, value=event.value)

    faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False,
                 override_logging=False).execute_from_commandline()
