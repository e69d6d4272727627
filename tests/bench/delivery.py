"""Phase `delivery` (issue 19): the delivery stage as `yingji run` starts it (its own process), the local
sinks (a real SMTP server, aiosmtpd, keeping a Maildir; the robot sink), the API and a local Apache
Kafka, every one on 127.0.0.1.

- notice → mail: notices written to the notifications topic at `delivery_rate` a second for
  `delivery_seconds`, each to a person on duty with an email address; the latency is the message's
  file time in the Maildir (the SMTP server wrote it on receipt) minus the notice's requested_at
  (aim: p99 ≤ 1 s).
- ack → ladder stopped: an ack link's button (POST /ack/{token}) for `delivery_acks` notices; the
  latency is from the POST to the stage's `acknowledged` log line (from then on no step is taken for
  it) (aim: p99 ≤ 1 s).
- a burst to one robot: `robot_notices` notices to the 企业微信 robot within `robot_seconds`; the
  figures are the most posts in any 60 s (aim: ≤ 20) and whether every notice is in a post.
Two cores are shared by the broker, the stage, the sinks, the API and this load: every row says so.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from email import message_from_bytes, policy
from pathlib import Path

import httpx
from kafka import KafkaProducer

from services.delivery.tokens import key_from_file, make_token
from services.duty.book import publish, to_record
from services.local.kafka import free_port, free_port_run
from services.local.sinks import mail_dir, sinks_dir
from services.local.stack import LocalStack
from services.privacy import Sealer
from services.settings import Settings
from tests.bench.harness import Context, Row, percentile, say
from tests.waiting import eventually
from topics.catalog import KEYED_PARTITIONS, NOTIFICATIONS_REQUESTED
from topics.duty import Contacts, Person, Roster, Rotation
from topics.models import NotificationRequested, OnDutyRef, Post

UNIT = "district_emergency_office"
PERSON = "bench-officer"
SHARED = "2 cores shared by broker, delivery stage, sinks, API and load generator"


def _stack(ctx: Context, name: str, channels: str) -> LocalStack:
    data = ctx.work / name
    settings = Settings(data_dir=data, kafka_port=free_port(), kafka_controller_port=free_port(), api_port=free_port(),
                        worker_web_port=free_port_run(1), sinks_smtp_port=free_port(), sinks_http_port=free_port(),
                        delivery_web_port=free_port(), app_id=f"bench-{name}", topic_partitions=KEYED_PARTITIONS)
    st = LocalStack(settings, log_dir=data / "logs")
    st.start_broker()
    person = Person(id=PERSON, name="压测值班员", unit_id=UNIT, post=Post.officer, is_leader=False, employment="regular",
                    contacts=Contacts(mobile="13900000000", email="bench@example.cn",
                                      chat_ids={"wecom": "bench", "dingtalk": "bench"}))
    rotation = Rotation(id="rot-bench", unit_id=UNIT, post=Post.officer, people=[PERSON], rrule="FREQ=DAILY",
                        dtstart=datetime(2026, 1, 1, tzinfo=timezone.utc))
    publish(settings.bootstrap, [to_record(Roster(people=[person], rotations=[rotation]), UNIT,
                                           Sealer.from_file(settings.key_file), source="json",
                                           now=datetime.now(timezone.utc), by="bench")], [])
    st.start_sinks()
    st.start_delivery(env={"YINGJI_CHANNELS": channels})
    return st


def _notice(key: str, kind: str = "reminder") -> NotificationRequested:
    now = datetime.now(timezone.utc)
    return NotificationRequested(id=key, dedup_key=key, incident_id=key.split(".")[0], unit_id=UNIT, unit="区应急办",
                                 kind=kind, why="压测", rule="bench", section="issue 19", requested_at=now,
                                 on_duty=OnDutyRef(unit_id=UNIT, post=Post.officer, person_id=PERSON, source="rotation", at=now))


def _paced(producer: KafkaProducer, keys: list[str], rate: float, kind: str) -> dict[str, float]:
    """Each notice at its slot of `rate` a second; its requested_at as epoch seconds."""
    sent: dict[str, float] = {}
    start = time.monotonic()
    for i, key in enumerate(keys):
        wait = start + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        notice = _notice(key, kind)
        sent[key] = notice.requested_at.timestamp()
        producer.send(NOTIFICATIONS_REQUESTED.name, key=key.encode(), value=notice.model_dump_json().encode())
    producer.flush()
    return sent


class MailTimes:
    """dedup_key -> when the SMTP server stored its message (the Maildir file's time, written on
    receipt); each file read once."""

    def __init__(self, data: Path) -> None:
        self.dir = Path(mail_dir(data)) / "new"
        self.read: set[str] = set()
        self.times: dict[str, float] = {}

    def __call__(self) -> dict[str, float]:
        if self.dir.exists():
            for path in self.dir.iterdir():
                if path.name in self.read:
                    continue
                self.read.add(path.name)
                msg = message_from_bytes(path.read_bytes(), policy=policy.default)
                self.times.setdefault(msg["X-Yingji-Dedup-Key"], path.stat().st_mtime)
        return self.times


def _log_times(path: Path, event: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if f'"{event}"' not in line:
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("event") == event:
            out.setdefault(doc["dedup_key"], datetime.fromisoformat(doc["timestamp"].replace("Z", "+00:00")).timestamp())
    return out


def measure(ctx: Context) -> None:
    s = ctx.sizes
    st = _stack(ctx, "delivery-mail", "email")
    try:
        st.start_api()
        mail_times = MailTimes(st.settings.data_dir)
        producer = KafkaProducer(bootstrap_servers=st.settings.bootstrap, acks="all", linger_ms=0)
        # warm-up: the stage holds its partitions and has sent a first message
        _paced(producer, ["warm-0.n"], 1, "reminder")
        eventually(lambda: mail_times().get("warm-0.n"), timeout=60, every=0.2,
                   what="a first message through the delivery stage")
        n = int(s.delivery_rate * s.delivery_seconds)
        keys = [f"bm-{i:06d}.n" for i in range(n)]
        say(f"delivery: {n} notices at {s.delivery_rate:g}/s …")
        sent = _paced(producer, keys, s.delivery_rate, "reminder")
        got = eventually(lambda: mail_times(), until=lambda g: all(k in g for k in keys),
                         timeout=120, every=0.5, what="every notice's mail in the Maildir")
        lat = [max(0.0, got[k] - sent[k]) * 1000 for k in keys]
        settings = {"notices": n, "rate_per_s": s.delivery_rate, "seconds": s.delivery_seconds, "channel": "email",
                    "process": "delivery stage, 1 process; SMTP sink aiosmtpd, 1 process", "shared": SHARED}
        for p in (50, 99):
            ctx.rows.append(Row(f"delivery.mail_latency_p{p}", percentile(lat, p), "ms",
                                "p99 ≤ 1000 ms" if p == 99 else "", (percentile(lat, 99) <= 1000) if p == 99 else None,
                                settings, "notice requested_at → the SMTP server stored it"))

        # ack → the stage has it (no step after it)
        acks = s.delivery_acks
        ack_keys = [f"ba-{i:05d}.n" for i in range(acks)]
        _paced(producer, ack_keys, 50, "routing")
        eventually(lambda: mail_times(), until=lambda g: all(k in g for k in ack_keys),
                   timeout=60, every=0.5, what="the ack notices sent")
        key = key_from_file(st.settings.ack_key_path)
        posted: dict[str, float] = {}
        with httpx.Client(base_url=st.settings.api_url, timeout=10) as api:
            for k in ack_keys:
                token = make_token(k, PERSON, datetime.now(timezone.utc), key)
                posted[k] = time.time()
                resp = api.post(f"/ack/{token}")
                if resp.status_code >= 400:
                    raise RuntimeError(f"ack POST answered {resp.status_code}: {resp.text[:200]}")
                time.sleep(0.02)
        log = st.log_path("delivery")
        assert log is not None
        seen = eventually(lambda: _log_times(log, "acknowledged"), until=lambda g: all(k in g for k in ack_keys),
                          timeout=60, every=0.5, what="every ack seen by the delivery stage")
        ack_lat = [max(0.0, seen[k] - posted[k]) * 1000 for k in ack_keys]
        ctx.rows.append(Row("delivery.ack_to_ladder_stopped_p99", percentile(ack_lat, 99), "ms", "p99 ≤ 1000 ms",
                            percentile(ack_lat, 99) <= 1000,
                            {"acks": acks, "process": "API 1 process, delivery stage 1 process", "shared": SHARED},
                            "POST /ack/{token} sent → the stage logged `acknowledged` (the ladder stops there)"))
        producer.close()
    finally:
        st.stop()

    st = _stack(ctx, "delivery-robot", "wecom")
    try:
        producer = KafkaProducer(bootstrap_servers=st.settings.bootstrap, acks="all", linger_ms=0)
        n = s.robot_notices
        keys = [f"br-{i:05d}.n" for i in range(n)]
        say(f"delivery: {n} notices to one robot in {s.robot_seconds:g} s …")
        _paced(producer, keys, n / s.robot_seconds, "reminder")
        producer.close()
        jsonl = sinks_dir(st.settings.data_dir) / "wecom.jsonl"

        def posts() -> list[dict]:
            return [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()] if jsonl.exists() else []

        def covered(ps: list[dict]) -> bool:
            text = "\n".join(p["body"]["text"]["content"] for p in ps)
            return all(k.split(".")[0] in text for k in keys)

        ps = eventually(posts, until=covered, timeout=s.robot_seconds + 150, every=1,
                        what="every notice in a robot post")
        times = sorted(datetime.fromisoformat(p["received_at"]).timestamp() for p in ps)
        most = max(sum(1 for t in times if t0 <= t < t0 + 60) for t0 in times)
        sizes = [len(p["body"]["text"]["content"].encode()) for p in ps]
        settings = {"notices": n, "seconds": s.robot_seconds, "posts": len(ps), "max_digest_bytes": max(sizes),
                    "limit": "20 a minute (企业微信), local limiter", "shared": SHARED}
        ctx.rows.append(Row("delivery.robot_posts_max_per_60s", most, "posts", "≤ 20", most <= 20, settings,
                            "the most posts the robot received in any 60 s"))
        ctx.rows.append(Row("delivery.robot_every_notice_in_a_post", 1.0 if covered(ps) else 0.0, "bool", "1", covered(ps),
                            settings, f"{len(ps)} posts, largest {max(sizes)} bytes (≤ 2048)"))
    finally:
        st.stop()
