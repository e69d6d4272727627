"""A deployment made with 4 partitions grown to the catalog's 12 (issue 22, deploy/MIGRATION.md), the way
an operator does it: workers stopped, `yingji migrate partitions --to 12`, workers started again. The
incidents decided before it keep their obligations on the worker that now owns them: a phone report filed
after the migration meets its obligation, a report sent again is still a duplicate, and the worker's table
has every incident on its new partition, no stale copy on the old one."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from services.kafka_topics import keyed_partitions, partition_of
from services.local.kafka import free_port, free_port_run
from services.local.stack import LocalStack, stop_group
from services.settings import Settings
from services.users import new_token, publish_user, user_record
from tests.conftest import read_records, start_api_on_a_free_port, unique_id
from tests.e2e.faults import body
from tests.waiting import eventually
from topics.catalog import INCIDENTS_DECIDED, INCIDENTS_REPORTED, KEYED_PARTITIONS
from topics.models import Role

pytestmark = pytest.mark.e2e
OWED = {"phone_report", "written_report", "detailed_report"}  # owed by every incident from the start
REPORTS = 24


def migrate(st: LocalStack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", "migrate", "partitions", *args], env=st.env,
                          capture_output=True, text=True, timeout=120)


def read_to_the_end(bootstrap: str, group: str, topic: str) -> bool:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        committed = {tp: m.offset for tp, m in admin.list_group_offsets([group]).get(group, {}).items() if tp.topic == topic}
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
        return all(committed.get(tp, 0) >= end for tp, end in ends.items())
    finally:
        admin.close()
        consumer.close()


def decided(c: httpx.Client, iid: str) -> bool:
    r = c.get(f"/incidents/{iid}")
    return r.status_code == 200 and r.json()["status"] == "decided" and OWED <= {o["kind"] for o in r.json()["obligations"]}


def test_four_partitions_grown_to_twelve_keep_every_incident(tmp_path):
    settings = Settings(data_dir=tmp_path, kafka_port=free_port(), kafka_controller_port=free_port(), api_port=free_port(),
                        worker_web_port=free_port_run(1), app_id=unique_id("mig"), topic_partitions=4)
    st = LocalStack(settings, log_dir=tmp_path / "logs")
    try:
        st.start_broker()
        token = new_token()
        publish_user(settings.bootstrap, user_record("mig-officer", Role.DUTY_OFFICER, token,
                                                     now=datetime.now(timezone.utc), by="test"))
        st.start_worker()
        start_api_on_a_free_port(st)
        assert keyed_partitions(settings.bootstrap) == 4
        with httpx.Client(base_url=st.settings.api_url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as c:
            sent = [body() for _ in range(REPORTS)]
            ids = []
            for b in sent:
                r = eventually(lambda: c.post("/incidents", json=b), until=lambda r: r.status_code == 202, timeout=60,
                               every=1, what="a report accepted")
                ids.append(r.json()["incident_id"])
            for iid in ids:
                eventually(lambda: decided(c, iid), timeout=90, every=0.3, what=f"{iid} decided with its 3 obligations")
            moving = [iid for iid in ids if partition_of(iid, 4) != partition_of(iid, KEYED_PARTITIONS)]
            assert moving, "no incident changes partition: the test would prove nothing"

            refused = migrate(st, "--to", "12", "--wait", "0")
            assert refused.returncode == 2 and "stop the workers" in refused.stderr, refused.stderr
        stop_group(st.api)  # deploy/MIGRATION.md: the API first (no report while topics grow), then the workers
        stop_group(st.worker)
        dry = migrate(st, "--to", "12", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert keyed_partitions(settings.bootstrap) == 4  # a dry run changes nothing
        done = migrate(st, "--to", "12")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        print("\nmigration:", done.stdout.strip())
        assert report["before"] == 4 and report["after"] == 12 and report["entries"] >= REPORTS
        assert report["moved"] == json.loads(dry.stdout)["moved"] >= len(moving)
        assert keyed_partitions(settings.bootstrap) == 12
        again = migrate(st, "--to", "12")  # run again (as after a run stopped half-way): nothing left to move
        assert again.returncode == 0 and json.loads(again.stdout)["moved"] == 0, again.stdout + again.stderr
        fewer = migrate(st, "--to", "8")
        assert fewer.returncode == 2 and "only adds partitions" in fewer.stderr, fewer.stderr

        # the table: every incident's live entry on its new partition, none left on the old one
        live: dict[str, int] = {}
        for rec in read_records(settings.bootstrap, f"{report['changelog']}"):
            key = json.loads(rec.key)
            if rec.value is None:
                live.pop(key, None) if live.get(key) == rec.partition else None
            else:
                live[key] = rec.partition
        assert {iid: live.get(iid) for iid in ids} == {iid: partition_of(iid, 12) for iid in ids}

        st.start_worker()
        start_api_on_a_free_port(st)
        with httpx.Client(base_url=st.settings.api_url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as c:
            for iid in moving:  # each obligation met on the worker that owns the incident now
                now = datetime.now(timezone.utc).isoformat()
                r = c.post(f"/incidents/{iid}/reports", json={"kind": "phone_report", "unit_id": "district_emergency_bureau",
                                                              "filed_at": now, "filed_by": "值班员", "content": "电话报告"})
                assert r.status_code == 202, r.text
            for iid in moving:
                eventually(lambda: next(o for o in c.get(f"/incidents/{iid}").json()["obligations"]
                                        if o["kind"] == "phone_report")["status"], until=lambda s: s == "met",
                           timeout=90, every=0.3, what=f"{iid}'s phone report met after the migration")
            fresh = c.post("/incidents", json=body())
            assert fresh.status_code == 202
            eventually(lambda: decided(c, fresh.json()["incident_id"]), timeout=60, every=0.3, what="a new report decided")
        # a report sent again after the migration (straight onto its topic, past the API's own check): the worker
        # knows the incident on its new partition and decides nothing new
        originals = [r for r in read_records(settings.bootstrap, INCIDENTS_REPORTED.name) if r.key.decode() in moving]
        producer = KafkaProducer(bootstrap_servers=settings.bootstrap, acks="all")
        for r in originals:
            producer.send(INCIDENTS_REPORTED.name, key=r.key, value=r.value).get(timeout=30)
        producer.close()
        before = len([r for r in read_records(settings.bootstrap, INCIDENTS_DECIDED.name) if r.key.decode() in moving])
        group = report["changelog"].removesuffix("-incidents-changelog")  # Faust's group: the app id
        eventually(lambda: read_to_the_end(settings.bootstrap, group, INCIDENTS_REPORTED.name), timeout=60, every=0.5,
                   what="the worker to have read (and committed) every report, the resent ones too")
        after = [r for r in read_records(settings.bootstrap, INCIDENTS_DECIDED.name) if r.key.decode() in moving]
        assert len(after) == before, "a report sent again after the migration was decided again"
    finally:
        st.stop()
