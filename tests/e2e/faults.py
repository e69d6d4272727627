"""What the fault tests share: the reports they post, the load generator, and the checks after a fault
(every report answered 202 decided, each incident's notifications there). tests/e2e/test_faults.py
(one broker) and tests/e2e/test_faults_cluster.py (three) use them."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

import httpx
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from tests.conftest import read_records, unique_id
from topics.catalog import INCIDENTS_DECIDED, INCIDENTS_REPORTED


def body(*, received_ago: timedelta = timedelta(0)) -> dict:
    """A road accident with one injured; received `received_ago` before now (its phone report falls
    due 10 minutes after receipt: 9 min 50 s ago means due 10 s from now)."""
    received = datetime.now(timezone.utc) - received_ago
    return {"report_id": unique_id("f"), "type": "道路交通事故", "location": {"street": "宋庄镇"},
            "occurred_at": (received - timedelta(minutes=1)).isoformat(), "received_at": received.isoformat(),
            "facts": {"injuries": 1}}


@dataclass
class Attempt:
    started: float  # time.time() when the request went out
    answered: float  # and when its answer (or the transport error) came back
    status: int | str  # the HTTP status, or the transport error's class name


@dataclass
class Sent:
    """One report and every try to post it (the same body each time: the API answers a repeat of a
    report it has with the same 202, and does not send it twice)."""

    body: dict = field(default_factory=dict)  # made when its first try goes out
    scheduled: float = 0.0  # when the load generator meant to send it (a try waits for a free slot)
    attempts: list[Attempt] = field(default_factory=list)
    incident_id: str | None = None  # from the 202

    @property
    def report_id(self) -> str:
        return self.body["report_id"]

    @property
    def acked(self) -> bool:
        return self.incident_id is not None

    @property
    def final(self) -> int | str:
        return self.attempts[-1].status if self.attempts else "not_sent"

    @property
    def acked_at(self) -> float | None:
        return self.attempts[-1].answered if self.acked else None


async def post_reports(api: str, token: str, n: int, make: Callable[[int], dict] = lambda _: body(), *,
                       concurrency: int = 16, rate: float | None = None, retry_for_s: float = 0.0,
                       timeout: float = 30) -> list[Sent]:
    """n reports to POST /incidents, report i's body made by `make(i)` when its first try goes out (its
    times are the moment it is sent), at most `concurrency` requests under way; at `rate` a second when
    given (else as fast as they are answered). With `retry_for_s`, a report answered 503 is sent
    again after its Retry-After, and one whose request failed (timeout, connection refused) or that a
    gateway answered 502 or 504 (haproxy, when the replica it chose died under the request) after a second, with the same report_id, until it is answered 202 or retry_for_s have passed since its first
    try; anything else (a 4xx, a 500) is its final answer."""
    sem = asyncio.Semaphore(concurrency)
    sent: list[Sent] = []

    async def post(client: httpx.AsyncClient, s: Sent, i: int) -> None:
        while True:
            async with sem:
                if not s.body:
                    s.body = make(i)
                started = time.time()
                try:
                    resp = await client.post("/incidents", json=s.body)
                    status: int | str = resp.status_code
                except httpx.HTTPError as exc:
                    resp, status = None, type(exc).__name__
                s.attempts.append(Attempt(started, time.time(), status))
            if status == 202:
                s.incident_id = resp.json()["incident_id"]
                return
            if status == 503:
                wait = float(resp.headers.get("Retry-After", "1"))
            elif isinstance(status, str) or status in (502, 504):
                wait = 1.0  # no answer, or haproxy's: the replica it chose died under the request
            else:
                return
            if time.time() + wait - s.attempts[0].started > retry_for_s:
                return
            await asyncio.sleep(wait)  # its slot free meanwhile: others go on

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=api, timeout=timeout, limits=limits,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        tasks = []
        t0 = time.time()
        for i in range(n):
            scheduled = t0 + i / rate if rate else t0
            await asyncio.sleep(max(0.0, scheduled - time.time()))
            sent.append(s := Sent(scheduled=scheduled))
            tasks.append(asyncio.create_task(post(client, s, i)))
        await asyncio.gather(*tasks)
    return sent


async def post_many(api: str, token: str, n: int, concurrency: int = 16) -> tuple[list[str], Counter]:
    """n reports as fast as they are answered, each tried once: the incident ids answered 202, and
    how many answers of each status (or transport error)."""
    sent = await post_reports(api, token, n, concurrency=concurrency)
    statuses = Counter("transport_error" if isinstance(s.final, str) else s.final for s in sent)
    return [s.incident_id for s in sent if s.acked], statuses


def wait_decided(bootstrap: str, acked: set[str], timeout: float) -> set[str]:
    """Reads the decisions until every acked incident has one or `timeout` passed: those still without."""
    deadline = time.monotonic() + timeout
    while True:
        decided = {json.loads(r.value)["incident_id"] for r in read_records(bootstrap, INCIDENTS_DECIDED.name, settle_s=0)}
        missing = set(acked) - decided
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(2)


class TopicTail:
    """A topic read from the beginning and then followed (no consumer group): each `read()` returns
    the records that came since, so a long wait reads every record once."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      max_partition_fetch_bytes=8 * 1024 * 1024)
        parts = [TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic) or [])]
        self.consumer.assign(parts)
        self.consumer.seek_to_beginning(*parts)

    def read(self, quiet_ms: int = 1000) -> list:
        out = []
        while True:
            batch = self.consumer.poll(timeout_ms=quiet_ms, max_records=5000)
            if not batch:
                return out
            for records in batch.values():
                out.extend(records)

    def close(self) -> None:
        self.consumer.close()


@dataclass
class NoteFigures:
    records: int  # notification records of the incidents asked about
    dedup_keys: int
    repeated_records: int  # records beyond the first under a dedup key (legal: at least once)
    incidents_without: set[str]  # asked about, and no notification at all
    missing_keys: int  # routing notices a decision names and no record carries (-1: decisions not given)


def check_notifications(notes: list[dict], incidents: set[str], decisions: dict[str, dict] | None = None) -> NoteFigures:
    """The notifications of `incidents`: a dedup key's repeats must be the same notification (same unit,
    rule, incident and kind); with `decisions` (incident id -> IncidentDecided), every routing notice
    each decision names (the ones not waiting for an approval) must be there."""
    notes = [n for n in notes if n["incident_id"] in incidents]
    per_key = Counter(n["dedup_key"] for n in notes)
    same: dict[str, set] = defaultdict(set)
    for n in notes:
        same[n["dedup_key"]].add((n["unit_id"], n["rule"], n["incident_id"], n["kind"]))
    differing = {k: v for k, v in same.items() if len(v) > 1}
    assert not differing, f"a dedup key on different notifications: {list(differing.items())[:5]}"
    missing = -1
    if decisions is not None:
        routed = defaultdict(set)
        for n in notes:
            if n["kind"] == "routing":
                routed[n["incident_id"]].add((n["unit_id"], n["rule"]))
        missing = sum(len({(x["unit_id"], x["rule"]) for x in d["decision"]["notify"] if not x["after_approval"]}
                          - routed[iid]) for iid, d in decisions.items() if iid in incidents)
    return NoteFigures(records=len(notes), dedup_keys=len(per_key),
                       repeated_records=sum(v - 1 for v in per_key.values()),
                       incidents_without=incidents - {n["incident_id"] for n in notes}, missing_keys=missing)


def group_owners(bootstrap: str, group: str) -> dict[str, set[int]]:
    """The group's members (by static instance id) and the partitions of the reports' topic each owns.
    (kafka-python decodes the standard part of Faust's assignment and warns that it cannot read Faust's
    own metadata: quieted.)"""
    logging.getLogger("kafka.admin").setLevel(logging.ERROR)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        desc = admin.describe_groups([group]).get(group) or {}
    finally:
        admin.close()
    out: dict[str, set[int]] = {}
    for m in desc.get("members") or []:
        assigned = (m.get("member_assignment") or {}).get("assigned_partitions") or []
        out[m.get("group_instance_id") or m["member_id"]] = {
            p for a in assigned if a["topic"] == INCIDENTS_REPORTED.name for p in a["partitions"]}
    return out
