"""Users and bearer tokens: records on a compacted topic, tokens stored only as SHA-256 hashes.

Tokens are 256-bit random values, so a plain SHA-256 is enough to keep them unrecoverable from the
topic (a slow password hash protects low-entropy secrets; these are not).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from datetime import datetime

import structlog
from aiokafka import TopicPartition
from pydantic import ValidationError

from services.following import ReadProgress, follow_from_start
from topics.catalog import USERS
from topics.models import Role, UserRecord

log = structlog.get_logger("yingji", stage="users")
LOOKUP_S = 2.0  # a token unknown here waits at most this long for the users topic read to its end


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def user_record(name: str, role: Role, token: str, *, now: datetime, by: str, revoked: bool = False) -> UserRecord:
    return UserRecord(id=f"user.{name}.{int(now.timestamp() * 1000)}", name=name, role=role,
                      token_sha256=token_hash(token), revoked=revoked, changed_at=now, changed_by=by)


class UserDirectory:
    """Latest record per user, followed from the users topic; lookups by token hash."""

    def __init__(self) -> None:
        self.by_name: dict[str, UserRecord] = {}
        self.by_hash: dict[str, UserRecord] = {}
        self.caught_up = asyncio.Event()
        self.progress = ReadProgress()

    def apply(self, rec: UserRecord) -> None:
        old = self.by_name.get(rec.name)
        if old is not None:
            self.by_hash.pop(old.token_sha256, None)
        self.by_name[rec.name] = rec
        if not rec.revoked:
            self.by_hash[rec.token_sha256] = rec

    def authenticate(self, token: str) -> UserRecord | None:
        digest = token_hash(token)
        rec = self.by_hash.get(digest)
        if rec is None or not hmac.compare_digest(rec.token_sha256, digest):
            return None
        return rec

    def has_admin(self, *, besides: str | None = None) -> bool:
        """An active admin, other than `besides` if given."""
        return any(r.role is Role.ADMIN and not r.revoked and r.name != besides for r in self.by_name.values())

    def apply_raw(self, topic: str, value: bytes, offset: int) -> None:  # noqa: ARG002 - follow_from_start's apply
        try:
            self.apply(UserRecord.model_validate_json(value))
        except ValidationError:
            log.error("bad_user_record", offset=offset)

    async def follow(self, bootstrap: str) -> None:
        await follow_from_start(bootstrap, [TopicPartition(USERS.name, 0)], self.apply_raw, self.caught_up, "users",
                                self.progress)

    async def authenticate_read(self, token: str) -> UserRecord | None:
        """`authenticate`, and for a token not known here, again once the users topic is read to its end:
        a user another API replica made a moment ago signs in here too (while following; else as known)."""
        user = self.authenticate(token)
        if user is None and self.progress.consumer is not None and await self.progress.read_to_end(LOOKUP_S):
            user = self.authenticate(token)
        return user


# --- synchronous edge: the CLI ---------------------------------------------------------------


def read_users(bootstrap: str) -> dict[str, UserRecord]:
    from kafka import KafkaConsumer
    from kafka import TopicPartition as SyncTP

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000)
    try:
        tp = SyncTP(USERS.name, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        latest: dict[str, UserRecord] = {}
        if end == 0:
            return latest
        for r in consumer:
            rec = UserRecord.model_validate_json(r.value)
            latest[rec.name] = rec
            if r.offset + 1 >= end:
                break
        return latest
    finally:
        consumer.close()


def publish_user(bootstrap: str, rec: UserRecord) -> None:
    from kafka import KafkaProducer

    # a broker just started can answer NotLeaderForPartition for some seconds after its topics say they
    # are led (seen on two busy cores): retried for up to 15 s, not 5 quick tries
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=30, retry_backoff_ms=500)
    try:
        producer.send(USERS.name, key=rec.name.encode(), value=rec.model_dump_json().encode()).get(timeout=15)
    finally:
        producer.close()


def _keep_token(path, token: str) -> None:
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")


def ensure_admin(bootstrap: str, *, now: datetime, data_dir) -> str | None:
    """First run: make user `admin` (token returned and kept owner-only in data_dir/admin.token) and the
    viewer `metrics` for Prometheus (data_dir/metrics.token)."""
    existing = read_users(bootstrap)
    if any(r.role is Role.ADMIN and not r.revoked for r in existing.values()):
        return None
    token = new_token()
    publish_user(bootstrap, user_record("admin", Role.ADMIN, token, now=now, by="yingji run (first start)"))
    _keep_token(data_dir / "admin.token", token)
    if "metrics" not in existing:
        scrape = new_token()
        publish_user(bootstrap, user_record("metrics", Role.VIEWER, scrape, now=now, by="yingji run (first start)"))
        _keep_token(data_dir / "metrics.token", scrape)
    return token
