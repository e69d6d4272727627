"""A test message to one person (issue 19 item 6): a notice of kind `test` on the notifications topic,
which the delivery stage sends on every channel the person has, each with its ack link. Its ack (已阅)
marks the person's contacts verified; it has no ladder behind it. The terminal (`yingji notify test`)
and the 值班表 page's button make the same notice."""

from __future__ import annotations

import uuid
from datetime import datetime

from topics.duty import Person
from topics.models import NotificationRequested, OnDutyRef

TEST_INCIDENT = "test"
TEST_PREFIX = "test."


def is_test(dedup_key: str) -> bool:
    return dedup_key.startswith(TEST_PREFIX)


def test_notice(person: Person, unit_name: str, now: datetime, by: str) -> NotificationRequested:
    key = f"{TEST_PREFIX}{person.id}.{uuid.uuid4().hex[:12]}"
    return NotificationRequested(
        id=key, dedup_key=key, incident_id=TEST_INCIDENT, unit_id=person.unit_id, unit=unit_name, kind="test",
        why=f"测试消息：请点「已阅」，核实本渠道可以找到您（{by} 发起）",
        rule="test_message", section="issue 19 item 6", requested_at=now,
        on_duty=OnDutyRef(unit_id=person.unit_id, post=person.post, person_id=person.id, source="direct", at=now,
                          reasons=[f"a test message to {person.id}, asked by {by}"]),
    )
