"""The standby site (plan 2.2.2, 区应急委备份指挥平台 at 区人防办; issue 22 item 5; deploy/STANDBY.md): the command
center's Kafka (one node), its worker and API under load, MirrorMaker 2 copying every yingji.* topic and the
worker's changelog into a second Kafka (one node) with the same names and the groups' offsets translated; then
the command center's site lost at once (its broker, worker and API SIGKILLed) while reports are still coming;
the standby's worker and API started on the standby cluster, as the runbook says.

Checked: every report answered 202 at the primary before the cut that the mirror had copied is decided at the
standby (its API says so, its decisions' topic has it once in effect); a report answered 202 and not copied is
counted and printed as lost (the figure a cut can lose: the mirror's lag at the cut, also printed in records
of every mirrored topic), then filed again at the standby with its report id, as the runbook's reconciliation
does, and decided; a mirrored report posted again is answered with its incident and not written twice (the
API's dedup reads the mirrored log). The topics' partition counts and configs (the changelog compacted, the
retentions) are the primary's. Timers: one report in ten falls due 10 s after it is posted; every one the
standby has is breached there, once (those of the last 10 s fall due while the site is gone). With
--standby-recover (the drill): the primary's broker started again from its disk afterwards, and no notice
(by dedup key) and no acknowledged report it has is missing at the standby.

`make standby-drill` runs it at 20 reports/s for 60 s, the cut at the end while reports are still coming;
`make test` runs 10 reports/s for 12 s, MM2 frozen (SIGSTOP) for the last 2 s so the cut loses reports and
their re-filing runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from collections import Counter
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from services.kafka_topics import partition_counts
from services.local.kafka import LocalKafka, free_port, free_port_run
from services.local.mirror import LocalMirror
from services.local.stack import LocalStack, _kill
from services.settings import Settings
from services.standby import (MirrorLag, behind, committed_offsets, end_offsets, log_end_offsets, mirror_lag,
                              mirrored_topics, topic_configs)
from services.users import new_token, publish_user, user_record
from tests.conftest import read_records, start_api_on_a_free_port
from tests.e2e.faults import Sent, body, post_reports
from tests.e2e.test_faults_cluster import DUE_SOON, DUE_SOON_EVERY, quantile
from tests.waiting import eventually
from topics.catalog import INCIDENT_EVENTS, INCIDENTS_DECIDED, INCIDENTS_REPORTED, NOTIFICATIONS_REQUESTED
from topics.models import Role

pytestmark = pytest.mark.e2e

SHARED = "two cores shared by two brokers, MM2, the worker, the API and the load generator (and other runs)"
TAIL_S = 3.0  # reports keep coming this long after the cut is due: the cut falls mid-load
CONCURRENCY = 32


@dataclass
class Sites:
    primary: LocalStack
    standby: LocalStack
    standby_kafka: LocalKafka
    mirror: LocalMirror
    token: str
    started_s: float
    mirror_ready_s: float


@pytest.fixture()
def sites(tmp_path):
    """The command center (a Kafka node, the worker, the API) with MM2 copying it into the standby's Kafka node;
    the standby's worker and API made ready to start (settings, keys) and not started."""
    app_id = Settings().app_id  # what the processes take from their environment: the same at both sites
    ports = free_port_run(2)  # the two workers' metrics
    primary = LocalStack(Settings(data_dir=tmp_path / "primary", kafka_port=free_port(),
                                  kafka_controller_port=free_port(), api_port=free_port(),
                                  worker_web_port=ports, app_id=app_id), log_dir=tmp_path / "primary" / "logs")
    standby_kafka = LocalKafka(tmp_path / "standby" / "kafka", port=free_port(), controller_port=free_port(),
                               heap="384m")
    standby = LocalStack(Settings(data_dir=tmp_path / "standby", bootstrap_servers=standby_kafka.bootstrap,
                                  api_port=free_port(), worker_web_port=ports + 1, app_id=app_id),
                         log_dir=tmp_path / "standby" / "logs")
    ps = primary.settings
    mirror = LocalMirror(tmp_path / "mirror", primary=ps.bootstrap, standby=standby_kafka.bootstrap,
                         groups=[app_id, ps.delivery_group], changelogs=[f"{app_id}-incidents-changelog"])
    t0 = time.monotonic()
    try:
        with ThreadPoolExecutor(2) as pool:  # the two sites' brokers side by side
            started = pool.submit(standby_kafka.start, 120)
            primary.start_broker()
            started.result()
        token = new_token()
        publish_user(ps.bootstrap, user_record("sb-officer", Role.DUTY_OFFICER, token,
                                               now=datetime.now(timezone.utc), by="test"))
        mirror_t0 = time.monotonic()
        mirror.start()  # the worker's changelog, made as it starts, is found at MM2's next refresh (5 s)
        primary.start_worker()
        start_api_on_a_free_port(primary)
        # the deployment's one seal key and ack key (deploy/README.md): the standby's copies, made before the cut
        for name in ("seal.key", "ack.key"):
            shutil.copy2(ps.data_dir / name, standby.settings.data_dir / name)
        with httpx.Client(base_url=ps.api_url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as c:
            first = eventually(lambda: c.post("/incidents", json=body()), until=lambda r: r.status_code == 202,
                               timeout=60, every=1, what="a first 202").json()["incident_id"]
            eventually(lambda: c.get(f"/incidents/{first}").json()["status"], until=lambda s: s == "decided",
                       timeout=120, every=0.5, what="a first decision (the worker in its group)")
        mirror.wait_mirrored(mirrored_topics(app_id), timeout=120)
        # and caught up with what was there before (the lag sampled during the load is then the mirror's own)
        eventually(lambda: mirror_lag(end_offsets(ps.bootstrap, mirrored_topics(app_id)),
                                      end_offsets(standby_kafka.bootstrap, mirrored_topics(app_id))).total,
                   until=lambda n: n == 0, timeout=90, every=0.5, what="MM2 to catch up",
                   retry_on=(KafkaError,))  # a probe timed out on the busy machine: asked again
        yield Sites(primary, standby, standby_kafka, mirror, token, time.monotonic() - t0, time.monotonic() - mirror_t0)
    finally:
        standby.stop()
        mirror.stop(timeout=5)
        primary.stop()
        standby_kafka.stop()


class LagSampler:
    """Both clusters' end offsets taken side by side every `every` seconds during the load (one consumer on
    each, kept open): the mirror's lag, what a cut at that moment would have lost."""

    def __init__(self, primary: str, standby: str, topics: list[str], every: float = 1.0) -> None:
        self.topics, self.every = topics, every
        self.consumers = [KafkaConsumer(bootstrap_servers=b, enable_auto_commit=False, request_timeout_ms=15000,
                                        client_id="yingji-standby-probe") for b in (primary, standby)]
        self.tps = [[TopicPartition(t, p) for t in topics for p in sorted(c.partitions_for_topic(t) or ())]
                    for c in self.consumers]
        self.samples: list[MirrorLag] = []
        self.missed = 0  # samples a cluster did not answer in time (the machine busy): left out, counted
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(2)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> tuple[dict, dict]:
        ends = [self._pool.submit(c.end_offsets, tps) for c, tps in zip(self.consumers, self.tps)]
        return tuple({(tp.topic, tp.partition): off for tp, off in e.result().items()} for e in ends)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.samples.append(mirror_lag(*self.sample()))
            except KafkaError:
                self.missed += 1

    def halt(self) -> None:
        """The sampling thread ended: the consumers are the caller's alone (a consumer is not thread-safe)."""
        self._stop.set()
        self._thread.join(timeout=10)

    def stop(self) -> None:
        self.halt()
        self._pool.shutdown()
        for c in self.consumers:
            c.close()


@dataclass
class Cut:
    at: float = 0.0  # time.time() when the site was gone (every process of it SIGKILLed)
    primary_end: dict = field(default_factory=dict)  # end offsets of the mirrored topics just before the kill
    standby_end: dict = field(default_factory=dict)
    lag: MirrorLag | None = None
    primary_committed: dict = field(default_factory=dict)  # the worker group's committed offsets shortly before


def lose_the_primary(sites: Sites, cut: Cut, sampler: LagSampler) -> None:
    """The command center's site lost: both clusters' ends taken side by side, at once its broker SIGKILLed (what
    it had not handed to MM2 is gone with it), then its worker and API."""
    p = sites.primary
    cut.primary_committed = committed_offsets(p.settings.bootstrap, p.settings.app_id)
    sampler.halt()
    cut.primary_end, cut.standby_end = sampler.sample()
    p.broker.kill()
    cut.at = time.time()
    p.kill_workers()
    _kill(p.api)
    cut.lag = mirror_lag(cut.primary_end, cut.standby_end)


def settle(bootstrap: str, topics: list[str], quiet_s: float = 3.0, timeout: float = 60) -> dict:
    """The standby's end offsets once they have not moved for quiet_s (MM2's last batches from before the cut)."""
    last, since, t0 = None, time.monotonic(), time.monotonic()
    while time.monotonic() - t0 < timeout:
        now = end_offsets(bootstrap, topics)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return now
        time.sleep(0.5)
    return last or {}


@dataclass
class Recovered:
    notices: set[str]  # dedup keys at the command center never at the standby
    reports: set[str]  # incident ids at the command center not at the standby


def recover_the_primary(sites: Sites) -> Recovered:
    """The runbook's reconciliation from the command center's disks: its broker started alone on its data (no
    services, MM2 stopped: nothing copies), both clusters read. A notice the cut lost and the standby's worker
    wrote again (re-reading behind its translated offsets) has the same dedup key: only the others count."""
    p = sites.primary
    p.broker.start(120)
    try:
        def keys(bootstrap: str, topic: str, field: str) -> set[str]:
            return {json.loads(r.value)[field] for r in read_records(bootstrap, topic, settle_s=3)}

        standby = sites.standby_kafka.bootstrap
        return Recovered(
            notices=keys(p.settings.bootstrap, NOTIFICATIONS_REQUESTED.name, "dedup_key")
            - keys(standby, NOTIFICATIONS_REQUESTED.name, "dedup_key"),
            reports=keys(p.settings.bootstrap, INCIDENTS_REPORTED.name, "incident_id")
            - keys(standby, INCIDENTS_REPORTED.name, "incident_id"))
    finally:
        p.broker.stop()


def test_the_standby_takes_over_when_the_primary_is_lost(sites, request):
    rate = request.config.getoption("--standby-rate")
    seconds = request.config.getoption("--standby-seconds")
    stall = request.config.getoption("--standby-stall")
    p, s = sites.primary, sites.standby
    app_id = p.settings.app_id
    topics = mirrored_topics(app_id)
    cut = Cut()
    n = int(rate * (seconds + TAIL_S))
    due_soon: set[str] = set()

    def make(i: int) -> dict:
        """One report in ten received 9 min 50 s ago: its phone report falls due 10 s after it is posted, so those
        of the last 10 s before the cut fall due while the site is gone, and only the standby can breach them."""
        b = body(received_ago=DUE_SOON if i % DUE_SOON_EVERY == 0 else timedelta(0))
        if i % DUE_SOON_EVERY == 0:
            due_soon.add(b["report_id"])
        return b

    configs_primary = topic_configs(p.settings.bootstrap, topics)
    sampler = LagSampler(p.settings.bootstrap, sites.standby_kafka.bootstrap, topics)

    async def load() -> list[Sent]:
        t0 = time.time()

        async def cut_at() -> None:
            if stall:
                await asyncio.sleep(max(0.0, t0 + seconds - stall - time.time()))
                sites.mirror.pause()
            await asyncio.sleep(max(0.0, t0 + seconds - time.time()))
            await asyncio.to_thread(lose_the_primary, sites, cut, sampler)
            sites.mirror.resume()  # what it fetched before the stall it still delivers; the primary is gone

        cutting = asyncio.create_task(cut_at())
        sent = await post_reports(p.settings.api_url, sites.token, n, make, concurrency=CONCURRENCY, rate=rate,
                                  timeout=10)
        await cutting
        return sent

    load_before = os.getloadavg()[0]
    load_t0 = time.time()
    sent = asyncio.run(load())
    sampler.stop()
    lags = [lag.total for lag in sampler.samples]
    load_after = os.getloadavg()[0]
    acked = {s_.incident_id: s_ for s_ in sent if s_.acked and s_.acked_at <= cut.at}
    after_cut = [s_ for s_ in sent if not s_.acked]

    # the standby as MM2 left it: its last batches in, then MM2 stopped (the runbook's first step at the standby)
    standby_end = settle(sites.standby_kafka.bootstrap, topics)
    sites.mirror.stop(timeout=5)
    # the primary's disk read as it was left (its log directory: what a recovered machine would show) against
    # what MM2 delivered: every record the cut lost, exactly
    primary_disk = log_end_offsets(p.broker.log_dirs, topics)
    lost_records = mirror_lag(primary_disk, standby_end)
    standby_committed = committed_offsets(sites.standby_kafka.bootstrap, app_id)
    reported = [json.loads(r.value) for r in read_records(sites.standby_kafka.bootstrap, INCIDENTS_REPORTED.name)]
    mirrored = {v["incident_id"] for v in reported}
    copied_twice = len(reported) - len({v["id"] for v in reported})  # MM2 at least once: offsets then drift
    lost = set(acked) - mirrored
    counts_primary = {t: len({pt for (tt, pt) in cut.primary_end if tt == t}) for t in topics}
    counts_standby = partition_counts(sites.standby_kafka.bootstrap, topics)
    configs_standby = topic_configs(sites.standby_kafka.bootstrap, topics)

    # failover: the standby's worker and API on the standby cluster, unchanged but for their bootstrap servers
    t_fail = time.time()
    s.start_broker()  # the catalog's topics there already (MM2 made them): nothing created, every one led
    s.start_worker()
    start_api_on_a_free_port(s)
    api_up = time.time()
    with httpx.Client(base_url=s.settings.api_url, timeout=30, headers={"Authorization": f"Bearer {sites.token}"}) as c:
        fresh = eventually(lambda: c.post("/incidents", json=body()), until=lambda r: r.status_code == 202,
                           timeout=60, every=0.5, what="a 202 at the standby").json()["incident_id"]
        first_202 = time.time()
        eventually(lambda: c.get(f"/incidents/{fresh}").json()["status"], until=lambda st: st == "decided",
                   timeout=120, every=0.5, what="a decision at the standby")
        first_decision = time.time()

        def undecided() -> set[str]:
            decided = {json.loads(r.value)["incident_id"]
                       for r in read_records(sites.standby_kafka.bootstrap, INCIDENTS_DECIDED.name)}
            return (set(acked) & mirrored) - decided

        eventually(undecided, until=lambda left: not left, timeout=120, every=2, last_on_timeout=True)
        all_decided = time.time()
        api_undecided = {i for i in set(acked) & mirrored if c.get(f"/incidents/{i}").json().get("status") != "decided"}

        # timers: every phone report of those falling due that the standby has is breached there, once
        falling_due = due_soon & set(acked) & mirrored
        escalations_seen: dict[str, dict] = {}

        def not_breached() -> set[str]:
            for r in read_records(sites.standby_kafka.bootstrap, INCIDENT_EVENTS.name, settle_s=1):
                v = json.loads(r.value)
                if v["incident_id"] in falling_due and v["obligation"] == "phone_report":
                    escalations_seen[v["id"]] = v
            return falling_due - {v["incident_id"] for v in escalations_seen.values() if v["kind"] == "breach"}

        eventually(not_breached, until=lambda left: not left, timeout=90, every=2, last_on_timeout=True)
        breached_at = time.time()

        # a mirrored report posted again: the same incident, not written again (the dedup reads the mirrored log)
        again = sorted(set(acked) & mirrored)[:5]
        again_answers = {i: c.post("/incidents", json=acked[i].body) for i in again}
        # the reports lost at the cut filed again from the 值班 record (here: the load generator's), same report ids
        refiled = {i: c.post("/incidents", json=acked[i].body) for i in sorted(lost)}
        refiled_undecided = eventually(
            lambda: {i for i in refiled if c.get(f"/incidents/{i}").json().get("status") != "decided"},
            until=lambda left: not left, timeout=120, every=1, last_on_timeout=True)
    reported_after = [json.loads(r.value) for r in read_records(sites.standby_kafka.bootstrap, INCIDENTS_REPORTED.name)]
    decided_after = [json.loads(r.value) for r in read_records(sites.standby_kafka.bootstrap, INCIDENTS_DECIDED.name)]
    ids_per_incident: dict[str, set[str]] = {}
    for d in decided_after:
        ids_per_incident.setdefault(d["incident_id"], set()).add(d["id"])
    twice_in_effect = {i for i in acked if len(ids_per_incident.get(i, ())) > 1}
    breaches = [v for v in escalations_seen.values() if v["kind"] == "breach"]
    breached_twice = {i for i, k in Counter(v["incident_id"] for v in breaches).items() if k > 1}
    due_at = {v["incident_id"]: datetime.fromisoformat(v["details"]["due_at"]).timestamp()
              for v in escalations_seen.values() if v["kind"] == "obligation_opened"}
    after = [datetime.fromisoformat(v["recorded_at"]).timestamp() - due_at[v["incident_id"]] for v in breaches
             if due_at.get(v["incident_id"], 0) > cut.at]  # fell due while the site was gone
    written_again = {i for i in again if sum(1 for v in reported_after if v["incident_id"] == i) > 1}

    recovered = recover_the_primary(sites) if request.config.getoption("--standby-recover") else None

    lines = [
        f"standby drill: {rate:g} reports/s for {seconds:g} s at the primary"
        + (f", MM2 frozen (SIGSTOP, a stalled WAN) for the last {stall:g} s before the cut" if stall else "")
        + f", then the primary's broker, worker and API "
        f"SIGKILLed {cut.at - load_t0:.1f} s in, reports still coming; two single-node Kafka clusters, MM2 dedicated "
        f"(IdentityReplicationPolicy, checkpoints and group offsets synced every 5 s); set up in {sites.started_s:.1f} s "
        f"(MM2 caught up {sites.mirror_ready_s:.1f} s after its start)",
        f"reports: {len(sent)} posted, {len(acked)} answered 202 before the cut, {len(after_cut)} not answered (in "
        f"flight at the cut, or sent after it: the site gone); machine load average {load_before:.1f} before, {load_after:.1f} after",
        f"mirror lag during the load (records at the primary not yet on the standby, both clusters' ends taken side "
        f"by side every second, {len(lags)} samples, {sampler.missed} not answered in time): p50 {quantile(lags, .5):.0f} max {max(lags, default=0)} records; "
        f"at the cut (taken just before the broker's SIGKILL): {cut.lag.line()}",
        f"lost at the cut (the primary's log directory read after the kill, minus what MM2 had delivered to the "
        f"standby, {sum(standby_end.values()) - sum(cut.standby_end.values())} records after the ends were taken): "
        f"{lost_records.line()}; reports copied twice by MM2 {copied_twice}",
        f"reports lost: {len(lost)} of {len(acked)} answered 202 at the primary were not on the standby "
        f"(RPO = the mirror's lag); filed again at the standby with their report ids: "
        f"{sum(1 for r in refiled.values() if r.status_code == 202)} answered 202, {len(refiled) - len(refiled_undecided)} "
        f"decided",
        f"worker group offsets: the standby's (translated by MM2) {behind(cut.primary_committed, standby_committed)} "
        f"records behind the primary's at the cut, on {len(standby_committed)} of {len(cut.primary_committed)} "
        f"partitions (re-read at the standby, decided once)",
        f"failover (from the standby's worker and API being started, the operator's decision not counted): API answering "
        f"{api_up - t_fail:.1f} s, first 202 {first_202 - t_fail:.1f} s, its decision {first_decision - t_fail:.1f} s, "
        f"every mirrored report decided {all_decided - t_fail:.1f} s",
        f"timers: {len(falling_due)} phone reports falling due (one report in ten received 9 min 50 s before it was "
        f"posted), all breached at the standby {breached_at - t_fail:.1f} s after its start, none twice; {len(after)} "
        f"fell due after the cut, breached {quantile(after, .5):.1f} s (p50), {max(after, default=float('nan')):.1f} s (max) "
        f"after they were due (the site down, then the failover)",
        f"at the standby: {len(set(acked) & mirrored)} mirrored reports answered 202 at the primary, "
        f"{len(undecided())} undecided on the topic, {len(api_undecided)} undecided by the API; decided twice in effect "
        f"{len(twice_in_effect)}; a mirrored report posted again: {len(again)} answered "
        f"{sorted({r.status_code for r in again_answers.values()})}, written again {len(written_again)}",
    ]
    if recovered is not None:
        unanswered = {s_.body.get("report_id") for s_ in after_cut}
        lines.append(
            f"the command center's disks recovered (its broker started again alone, MM2 stopped): notices there never "
            f"at the standby (neither copied nor written again by its worker, by dedup key) {len(recovered.notices)}; "
            f"reports there not at the standby {len(recovered.reports)} (all sent without a 202 before the cut: "
            f"{len(recovered.reports & unanswered)})")
    print("\n" + "\n".join(f"{line}  ({SHARED})" for line in lines))
    (p.settings.data_dir.parent / "standby-drill.json").write_text(json.dumps({
        "rate": rate, "seconds": seconds, "acked": len(acked), "lost": sorted(lost), "lag": cut.lag.per_topic,
        "lost_records": lost_records.per_topic,
        "failover_s": {"api": api_up - t_fail, "first_202": first_202 - t_fail, "all_decided": all_decided - t_fail}}))

    assert acked, "no report was answered 202 before the cut"
    assert counts_standby == counts_primary, f"partition counts differ: {counts_primary} {counts_standby}"
    assert configs_standby == configs_primary, f"topic configs differ: {configs_primary} {configs_standby}"
    assert not undecided(), "a mirrored report answered 202 at the primary is not decided at the standby"
    assert not api_undecided, f"the standby's API does not say decided: {sorted(api_undecided)[:5]}"
    assert not twice_in_effect, f"decided twice in effect: {sorted(twice_in_effect)[:5]}"
    assert not not_breached(), f"phone reports fell due and were not breached at the standby: {sorted(not_breached())[:5]}"
    assert not breached_twice, f"breached twice: {sorted(breached_twice)[:5]}"
    assert all(r.status_code == 202 and r.json()["incident_id"] == i for i, r in again_answers.items())
    assert not written_again, f"a mirrored report was written again: {sorted(written_again)}"
    assert all(r.status_code == 202 for r in refiled.values()), {i: r.status_code for i, r in refiled.items()}
    assert not refiled_undecided, f"reports filed again at the standby and not decided: {sorted(refiled_undecided)}"
    assert all(primary_disk.get(tp, -1) >= end for tp, end in cut.primary_end.items()), "the disk holds less than was served"
    if stall:  # the mirror frozen before the cut: reports answered 202 meanwhile are lost, and were filed again
        assert lost, f"MM2 stalled {stall:g} s before the cut and no report answered 202 was lost"
    if not copied_twice:  # the offsets line up record for record: a lost report is a record past the standby's end
        assert len(lost) <= lost_records.per_topic.get(INCIDENTS_REPORTED.name, 0), (len(lost), lost_records.per_topic)
    if recovered is not None:
        assert not recovered.notices, f"notices lost for good: {sorted(recovered.notices)[:5]}"
        assert not recovered.reports & set(acked), "a report answered 202 at the primary is not at the standby"
    assert s.worker.poll() is None and s.api.poll() is None, "the standby's worker or API died"
