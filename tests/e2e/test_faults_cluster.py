"""Faults on the three-node cluster (issue 22, "beyond one machine"): the whole service on three Kafka
nodes (the full runs: two workers with warm standby tables and two API replicas behind haproxy, as a
deployment runs; the short run in `make test`: one of each), reports posted at a steady rate with obligations
falling due, and in each run one crash mid-load, restarted 15 s later:

  leader      the leader of a partition of the reports' topic SIGKILLed
  controller  the active controller (the metadata quorum's leader, as kafka-metadata-quorum says) SIGKILLed
  worker      a worker SIGKILLed (of two: the other takes its partitions over from its standby tables)
  api         an API replica SIGKILLed (of two: haproxy sends the reports to the other)

After the load, drained: every report answered 202 decided exactly once in effect; every report answered
otherwise looked up by its report id (landed or not, never assumed); every routing notice there; each
falling-due phone report breached once. Printed: the breach detection lag (the breach's recorded_at minus
the obligation's due_at) outside and inside the fault's window (from the kill until the ISR is back to 3
after the restart; for the worker, until it decides again), the time to serve again after the kill (the
first 202 to a request sent after it, the first decision made after it on the topic), the ISR back to 3.
A 503 while the cluster elects (the API's producer not acknowledged in 5 s: acks=all waits for the dead
node until it leaves the ISR) is retried with the same report_id after its Retry-After, and counted.

`make faults-cluster` runs it at full size (100 reports/s for 60 s); smaller with --cluster-rate and
--cluster-seconds. Each run starts its own cluster (a minute on two cores).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from services.local.kafka import BrokerError, free_port, free_port_run
from services.local.stack import LocalStack
from services.settings import Settings
from services.users import new_token, publish_user, user_record
from tests.conftest import read_records, start_api_on_a_free_port, unique_id
from tests.e2e.faults import Sent, TopicTail, body, check_notifications, group_owners, post_reports
from tests.waiting import eventually
from topics.catalog import CATALOG, ESCALATIONS, KEYED_PARTITIONS, INCIDENT_EVENTS, INCIDENTS_DECIDED, INCIDENTS_REPORTED, NOTIFICATIONS_REQUESTED
from topics.models import Role

pytestmark = pytest.mark.e2e  # the full runs are marked cluster too (`make faults-cluster`); the short one is in `make test`
SHORT_RATE, SHORT_SECONDS = 20.0, 20.0  # the short variant: a partition's leader killed 5 s into 20 s at 20 reports/s

SHARED = "two cores shared by three brokers, the workers, the API (with haproxy in the full runs) and the load generator"
REPORTED = INCIDENTS_REPORTED.name
DUE_SOON = timedelta(minutes=9, seconds=50)  # received this long ago: the phone report falls due 10 s after
DUE_SOON_EVERY = 10  # one report in ten
CONCURRENCY = 64  # requests under way at most
RETRY_FOR_S = 90  # a report answered 503 (or timed out) is posted again with its report_id this long
DOWN_S = 15  # from the kill to the restart


@pytest.fixture()
def cluster_stack(tmp_path, request):
    """Three Kafka nodes (the catalog's topics on three replicas), the workers and the API, each its own
    process with its own log under tmp_path/logs; the workers have decided a first report. The full runs
    (marked cluster): two workers and two API replicas behind haproxy; the short one: one of each."""
    deployed = request.node.get_closest_marker("cluster") is not None
    workers, apis = (2, 2) if deployed else (1, 1)
    for attempt in range(3):
        ports = free_port_run(6 + workers)  # six for the nodes and their controllers, one per worker's metrics
        settings = Settings(data_dir=tmp_path / f"try{attempt}", kafka_port=ports, kafka_nodes=3,
                            worker_web_port=ports + 6, workers=workers,
                            api_port=free_port_run(3) if apis > 1 else free_port(), api_replicas=apis,
                            haproxy_stats_port=0, app_id=unique_id("fc"),
                            topic_partitions=KEYED_PARTITIONS)  # as deployed
        st = LocalStack(settings, log_dir=tmp_path / "logs")
        t0 = time.monotonic()
        try:
            st.start_broker()
            break
        except BrokerError as exc:
            # a port free when chosen can be taken before the JVM binds it (other stacks start beside
            # this one): the cluster stopped what it had started; try fresh ports
            if "Address already in use" not in str(exc) or attempt == 2:
                raise
    try:
        st.started_s = time.monotonic() - t0  # type: ignore[attr-defined]
        st.token = new_token()  # type: ignore[attr-defined]
        publish_user(settings.bootstrap, user_record("fc-officer", Role.DUTY_OFFICER, st.token,
                                                     now=datetime.now(timezone.utc), by="test"))
        st.start_workers()
        if apis > 1:
            st.start_api()  # the replicas, then haproxy in front of them on api_port
        else:
            start_api_on_a_free_port(st)
        with httpx.Client(base_url=st.settings.api_url, timeout=30,
                          headers={"Authorization": f"Bearer {st.token}"}) as c:
            first = eventually(lambda: c.post("/incidents", json=body()), until=lambda r: r.status_code == 202,
                               timeout=60, every=1, what="a first 202").json()["incident_id"]
            eventually(lambda: c.get(f"/incidents/{first}").json()["status"], until=lambda s: s == "decided",
                       timeout=120, every=0.5, what="a first decision (the worker in its group)")
        yield st
    finally:
        st.stop()


class DecisionsSeen:
    """The decisions' topic followed during the run: when each incident's decision was first there to
    read (the broker had it), by record key (the incident id). Seen to within a poll (half a second)."""

    def __init__(self, bootstrap: str) -> None:
        self.first: dict[str, float] = {}  # incident id -> when its first decision record was seen
        self.at: dict[tuple[int, int], float] = {}  # (partition, offset) -> when that record was seen
        self._stop = threading.Event()
        self._tail = TopicTail(bootstrap, INCIDENTS_DECIDED.name)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for rec in self._tail.read(quiet_ms=500):
                now = time.time()
                self.first.setdefault(rec.key.decode(), now)
                self.at[(rec.partition, rec.offset)] = now

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._tail.close()


@dataclass
class Fault:
    kind: str
    node: int | None = None  # the node killed (None: the worker)
    affected: set[int] = field(default_factory=set)  # partitions of the reports' topic it led
    killed_at: float = 0.0
    restart_began: float = 0.0
    restarted_at: float = 0.0  # the restart done: the node answering, or the worker process started
    restart_s: float = 0.0
    isr_s: float | None = None
    after: str = ""  # who took over


async def inject(st: LocalStack, fault: Fault, kill_at: float) -> None:
    """The crash at time kill_at (time.time()), the restart DOWN_S after it; the load goes on meanwhile."""
    cluster = st.broker
    if fault.kind in ("leader", "controller"):
        # the controller's tool is a JVM of its own: asked in good time before the kill
        await asyncio.sleep(max(0.0, kill_at - 12 - time.time()))
        if fault.kind == "leader":
            fault.node = await asyncio.to_thread(cluster.leader_of, REPORTED, 0)
        else:
            fault.node = await asyncio.to_thread(cluster.active_controller)
        parts = await asyncio.to_thread(cluster.partitions, [REPORTED])
        fault.affected = {p for (_, p), v in parts.items() if v["leader"] == fault.node}
    elif fault.kind == "worker" and len(st.workers) > 1:  # the partitions the worker killed owns
        fault.node = None
        owned = await asyncio.to_thread(group_owners, st.settings.bootstrap, Settings().app_id)
        fault.affected = owned.get(st.settings.group_instance_id, set())
        fault.after = f"the other worker owned partitions {sorted(set().union(*owned.values()) - fault.affected)}"
    else:
        fault.affected = set(range(INCIDENTS_REPORTED.partitions))
    await asyncio.sleep(max(0.0, kill_at - time.time()))
    if fault.kind == "worker":
        await asyncio.to_thread(st.kill_worker)
    elif fault.kind == "api":
        await asyncio.to_thread(st.kill_api_replica, 0)
    else:
        await asyncio.to_thread(cluster.kill, fault.node)
    fault.killed_at = time.time()  # the process gone: the kill waits for it
    if fault.kind in ("leader", "controller"):
        fault.after = await after_kill(cluster, fault.kind, fault.node)
    await asyncio.sleep(max(0.0, fault.killed_at + DOWN_S - time.time()))
    fault.restart_began = time.time()
    if fault.kind == "worker":
        await asyncio.to_thread(st.start_worker)
    elif fault.kind == "api":
        await asyncio.to_thread(st.start_api_replica, 0)  # back once it answers; haproxy's checks take it in
    else:
        await asyncio.to_thread(cluster.restart, fault.node, 180)
    fault.restarted_at = time.time()
    fault.restart_s = fault.restarted_at - fault.restart_began
    if fault.kind in ("leader", "controller"):
        fault.isr_s = await asyncio.to_thread(cluster.wait_isr, [spec.name for spec in CATALOG], 3, 240)


async def after_kill(cluster, kind: str, killed: int) -> str:
    """Who took over, as the cluster says once it has moved on from the node killed (the leader of a
    partition: once the controller has fenced it, its broker session over)."""
    error: Exception | None = None
    t0 = time.time()
    while time.time() - t0 < 40:
        await asyncio.sleep(1)
        try:
            if kind == "controller":
                now = await asyncio.to_thread(cluster.active_controller)
                if now != killed:
                    return f"the controller on node {now} ({time.time() - t0:.0f} s after the kill)"
            else:
                now = await asyncio.to_thread(cluster.leader_of, REPORTED, 0)
                if now not in (killed, -1):
                    return f"{REPORTED}-0 led by node {now} ({time.time() - t0:.0f} s after the kill)"
        except Exception as exc:  # noqa: BLE001 - a figure to print, asked again
            error = exc
    return f"who took over not known 40 s after the kill ({error!r})"


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def read_json(bootstrap: str, topic: str) -> list:
    """(record, value as JSON) of every record of a topic written before the call (the workers go on writing
    reminders and escalations of the run's open incidents: the topic is never quiet)."""
    return [(r, json.loads(r.value)) for r in read_records(bootstrap, topic, settle_s=0)]


@pytest.mark.cluster
@pytest.mark.parametrize("kind", ["leader", "controller", "worker", "api"])
def test_a_crash_mid_load_on_the_cluster(cluster_stack, request, kind):
    crash_mid_load(cluster_stack, kind, request.config.getoption("--cluster-rate"),
                   request.config.getoption("--cluster-seconds"))


def test_a_leader_killed_mid_load_on_the_cluster_short(cluster_stack):
    """`make test`'s variant: the leader run, small (the others and the full size: `make faults-cluster`)."""
    crash_mid_load(cluster_stack, "leader", SHORT_RATE, SHORT_SECONDS)


def crash_mid_load(st: LocalStack, kind: str, rate: float, seconds: float) -> None:
    n = int(rate * seconds)
    bootstrap = st.settings.bootstrap
    due_soon: set[str] = set()

    def make(i: int) -> dict:
        b = body(received_ago=DUE_SOON if i % DUE_SOON_EVERY == 0 else timedelta(0))
        if i % DUE_SOON_EVERY == 0:
            due_soon.add(b["report_id"])
        return b

    seen = DecisionsSeen(bootstrap)
    fault = Fault(kind)

    async def run() -> list[Sent]:
        t0 = time.time()
        crash = asyncio.create_task(inject(st, fault, t0 + seconds / 4))
        sent = await post_reports(st.settings.api_url, st.token, n, make, concurrency=CONCURRENCY, rate=rate,
                                  retry_for_s=RETRY_FOR_S, timeout=15)
        await crash
        return sent

    load_t0, load_before = time.time(), os.getloadavg()[0]
    sent = asyncio.run(run())
    load_s = time.time() - load_t0
    load_after = os.getloadavg()[0]
    acked = {s.incident_id for s in sent if s.acked}
    indeterminate = [s for s in sent if not s.acked]

    # drained: every acknowledged report decided (or the worker given up on)
    drain_t0 = time.time()
    eventually(lambda: acked - set(seen.first), until=lambda left: not left, timeout=300 + 2 * seconds, every=2,
               last_on_timeout=True)
    seen.stop()
    escalations, breached = TopicTail(bootstrap, ESCALATIONS.name), set()

    def not_breached() -> set[str]:  # the phone reports that fell due, each breached (the last ones 10 s after)
        for rec in escalations.read(quiet_ms=500):
            v = json.loads(rec.value)
            if v["kind"] == "breach" and v["obligation"] == "phone_report":
                breached.add(v["incident_id"])
        return (due_soon & acked) - breached

    eventually(not_breached, until=lambda left: not left, timeout=120, every=2, last_on_timeout=True)
    escalations.close()
    drain_s = time.time() - drain_t0

    # the API's answer for each report not answered 202: landed (it knows the report id) or not
    with httpx.Client(base_url=st.settings.api_url, timeout=30, headers={"Authorization": f"Bearer {st.token}"}) as c:
        last = max((s for s in sent if s.acked), key=lambda s: s.acked_at).incident_id
        eventually(lambda: c.get(f"/incidents/{last}").status_code, until=lambda code: code == 200, timeout=120,
                   every=1, what="the API's read model to hold the last report acknowledged")
        api_landed = {s.report_id for s in indeterminate if c.get(f"/incidents/{s.report_id}").status_code == 200}

    reported = read_json(bootstrap, REPORTED)
    partition_of = {v["incident_id"]: r.partition for r, v in reported}
    reported_ids = Counter(v["id"] for _, v in reported)
    landed = {s.report_id for s in indeterminate if s.report_id in partition_of}
    decided_records = read_json(bootstrap, INCIDENTS_DECIDED.name)
    decided = [v for _, v in decided_records]
    decision_ids = defaultdict(set)
    for d in decided:
        decision_ids[d["incident_id"]].add(d["id"])
    decisions = {d["incident_id"]: d for d in decided}
    events = [v for _, v in read_json(bootstrap, INCIDENT_EVENTS.name) if v["obligation"] == "phone_report"]
    notes = check_notifications([v for _, v in read_json(bootstrap, NOTIFICATIONS_REQUESTED.name)],
                                acked | landed, decisions)

    # decisions: exactly one in effect per incident; a record written twice (at least once) is counted
    ours = acked | landed
    missing = ours - set(decision_ids)
    twice_in_effect = {i for i in ours if len(decision_ids.get(i, ())) > 1}
    ours_records = [d for d in decided if d["incident_id"] in ours]
    decision_dups = len(ours_records) - len({d["id"] for d in ours_records})

    # serving again: the first 202 to a request sent after the kill; the first decision made after the
    # kill (decided_at), when it was there to read on the topic; on any partition, and on those the killed node led
    def first_202(parts: set[int]) -> float | None:
        times = [a.answered for s in sent if s.acked and partition_of.get(s.incident_id) in parts
                 for a in s.attempts if a.status == 202 and a.started >= fault.killed_at]
        return min(times, default=None)

    def first_decision(parts: set[int]) -> float | None:
        times = [seen.at[(r.partition, r.offset)] for r, v in decided_records
                 if (r.partition, r.offset) in seen.at and partition_of.get(v["incident_id"]) in parts
                 and datetime.fromisoformat(v["decision"]["decided_at"]).timestamp() >= fault.killed_at]
        return min(times, default=None)

    # breaches: the detection lag (noticed minus due), inside the fault's window and outside it
    window_end = fault.restarted_at + (fault.isr_s or 0.0)
    if kind == "worker":  # the worker's partitions are served again when a decision is made on them
        window_end = first_decision(fault.affected) or fault.restarted_at
    elif kind == "api":  # the replica back (haproxy served meanwhile)
        window_end = fault.restarted_at
    due_at = {e["incident_id"]: datetime.fromisoformat(e["details"]["due_at"]).timestamp()
              for e in events if e["kind"] == "obligation_opened"}
    breaches = {e["id"]: e for e in events if e["kind"] == "breach" and e["incident_id"] in ours}
    per_incident = Counter(e["incident_id"] for e in breaches.values())
    inside, outside, before = [], [], 0
    for e in (e for e in breaches.values() if e["incident_id"] in due_soon):  # those meant to fall due in the run
        due = due_at.get(e["incident_id"], datetime.fromisoformat(e["at"]).timestamp())
        lag = datetime.fromisoformat(e["recorded_at"]).timestamp() - due
        (inside if fault.killed_at <= due <= window_end else outside).append(lag)
        before += due < fault.killed_at
    due_soon_ours = due_soon & ours

    def since_kill(t: float | None) -> str:
        return "never" if t is None else f"{t - fault.killed_at:.1f} s"

    every = set(range(INCIDENTS_REPORTED.partitions))
    attempts = Counter(a.status for s in sent for a in s.attempts)
    retried = sum(1 for s in sent if len(s.attempts) > 1)
    first_try = min(s.attempts[0].started for s in sent)
    answered_rate = len(acked) / max(1e-9, max(s.acked_at for s in sent if s.acked) - first_try)
    post_s = [s.attempts[-1].answered - s.attempts[-1].started for s in sent if s.acked]
    queued_s = [s.attempts[0].started - s.scheduled for s in sent]
    decide_s = [seen.first[s.incident_id] - s.acked_at for s in sent if s.acked and s.incident_id in seen.first]
    what = {"leader": f"node {fault.node}, leader of {REPORTED}-0 (and of partitions {sorted(fault.affected)})",
            "controller": f"node {fault.node}, the active controller (leader of {REPORTED} partitions "
                          f"{sorted(fault.affected)})",
            "worker": ("the worker" if len(st.workers) == 1 else
                       f"worker 0 of {len(st.workers)} (partitions {sorted(fault.affected)} of {REPORTED})"),
            "api": f"API replica 0 of {len(st.apis)} behind haproxy"}[kind]
    lines = [
        f"run {kind}: {what} SIGKILLed {fault.killed_at - load_t0:.1f} s into {seconds:g} s of load at {rate:g} reports/s, "
        f"started again {fault.restart_began - fault.killed_at:.1f} s after the kill"
        + (f"; {fault.after}" if fault.after else ""),
        f"cluster serving in {st.started_s:.1f} s; load {load_s:.1f} s (retries included); drained {drain_s:.1f} s after",
        f"load: offered {rate:g} reports/s for {seconds:g} s, answered 202 at {answered_rate:.1f}/s (first try to last 202); "
        f"POST answered 202 in p50 {quantile(post_s, .5):.2f} s p99 {quantile(post_s, .99):.2f} s; a report waited for one "
        f"of the {CONCURRENCY} slots p50 {quantile(queued_s, .5):.1f} s max {max(queued_s):.1f} s; its decision there to read "
        f"after its 202 p50 {quantile(decide_s, .5):.1f} s p99 {quantile(decide_s, .99):.1f} s; machine load average "
        f"{load_before:.1f} before, {load_after:.1f} after (other sessions' stacks run beside)",
        f"reports: {n} posted, {len(acked)} answered 202 "
        f"({sum(1 for s in sent if s.acked and len(s.attempts) > 1)} of them after a retry); {retried} retried with their "
        f"report_id; every answer: {dict(attempts)}",
        f"answered other than 202 (indeterminate): {len(indeterminate)} ({dict(Counter(s.final for s in indeterminate))}); "
        f"looked up by report_id: {len(landed)} landed, {len(indeterminate) - len(landed)} not landed "
        f"(the API's read model says {len(api_landed)} landed)",
        f"decisions: {len(ours) - len(missing)} of {len(ours)} decided, {len(missing)} missing; decision records "
        f"{len(ours_records)}, written twice {decision_dups} (at least once), duplicate effects after dedup by record id "
        f"{len(twice_in_effect)}; reports written twice {sum(v - 1 for v in reported_ids.values())}",
        f"notifications: {notes.records} records, {notes.dedup_keys} dedup keys, {notes.repeated_records} written twice; "
        f"dedup keys missing {notes.missing_keys}; incidents without any {len(notes.incidents_without)}",
        f"breaches: {len(per_incident.keys() & due_soon_ours)} phone reports breached of {len(due_soon_ours)} falling due "
        f"(and {len(per_incident.keys() - due_soon_ours)} others, received as posted, due 10 min later), "
        f"{sum(1 for v in per_incident.values() if v > 1)} breached twice; detection lag outside the fault window "
        f"p50 {quantile(outside, .5):.2f} s p99 {quantile(outside, .99):.2f} s max {max(outside, default=float('nan')):.2f} s "
        f"(n {len(outside)}: {before} due before the kill, {len(outside) - before} after the window); inside it "
        f"(due {fault.killed_at - load_t0:.0f}-{window_end - load_t0:.0f} s into the load) "
        f"p50 {quantile(inside, .5):.2f} s max {max(inside, default=float('nan')):.2f} s (n {len(inside)})",
        f"serving again after the kill: first 202 {since_kill(first_202(every))} (on the killed node's partitions "
        f"{since_kill(first_202(fault.affected))}); first decision made after the kill there to read {since_kill(first_decision(every))} (on its partitions "
        f"{since_kill(first_decision(fault.affected))})"
        + ("" if kind != "worker" else
           f", {(first_decision(fault.affected) or float('nan')) - fault.restarted_at:.1f} s after the worker's restart"),
        (f"restart: node {fault.node} answering {fault.restart_s:.1f} s after it was started again (a JVM, its logs "
         f"recovered after the SIGKILL, the metadata log replayed), the ISR of every catalog topic back to 3 "
         f"{fault.isr_s:.1f} s after that" if fault.isr_s is not None
         else f"restart: the worker process spawned in {fault.restart_s:.1f} s (deciding again: the line above)"
         if kind == "worker" else f"restart: the API replica answering {fault.restart_s:.1f} s after it was started again"),
    ]
    print("\n" + "\n".join(f"{line}  ({SHARED})" for line in lines))
    (st.settings.data_dir / "run.json").write_text(json.dumps({  # every try of every report, to look into after
        "fault": vars(fault) | {"affected": sorted(fault.affected)}, "load_t0": load_t0,
        "reports": [{"report_id": s.report_id, "partition": partition_of.get(s.report_id), "scheduled": s.scheduled,
                     "attempts": [vars(a) for a in s.attempts], "decision_seen": seen.first.get(s.report_id)}
                    for s in sent]}))

    assert acked, "no report was answered 202"
    assert not missing, f"{len(missing)} reports acknowledged (or landed) never decided: {sorted(missing)[:10]}"
    assert not twice_in_effect, f"decided twice in effect: {sorted(twice_in_effect)[:10]}"
    assert api_landed == landed, f"the API and the topic disagree on what landed: {api_landed ^ landed}"
    assert notes.missing_keys == 0 and not notes.incidents_without
    unbreached = {i for i in due_soon_ours if i in decisions} - set(per_incident)
    assert not unbreached, f"{len(unbreached)} phone reports fell due and were not breached"
    assert max(per_incident.values(), default=1) == 1, "a phone report breached twice"
    assert first_202(every) is not None and first_decision(every) is not None, "never served again after the kill"
    assert all(p.poll() is None for p in st.children()), "a worker or an API process died"
