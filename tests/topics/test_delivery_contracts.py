"""Delivery contracts (issue 19): deterministic ids, one topic keyed by the notice's dedup_key."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from topics.catalog import DELIVERIES, NOTIFICATIONS_REQUESTED
from topics.delivery import AckHow, AckRecord, DeliveryEvent, DeliveryRecord, DeliveryState, ack_id, delivery_id, send_id

T0 = datetime(2026, 11, 22, 1, 30, tzinfo=timezone.utc)


def record(state: DeliveryState = DeliveryState.ACCEPTED, **over) -> DeliveryRecord:
    base = dict(dedup_key="k1", step=0, notice_id="k1", incident_id="inc-1", person_id="p-7", channel="email",
                attempt=1, state=state, provider_id="<m1@x>" if state == DeliveryState.ACCEPTED else None,
                reason="timeout" if state in (DeliveryState.FAILED, DeliveryState.IN_DOUBT) else "", at=T0)
    base |= over
    return DeliveryRecord(id=delivery_id(base["dedup_key"], base["step"], base["person_id"], base["channel"],
                                         base["attempt"], base["state"]), **base)


@pytest.mark.parametrize("state", list(DeliveryState))
def test_each_state_round_trips_in_its_wrapper(state):
    ev = DeliveryEvent.of(record(state))
    assert DeliveryEvent.model_validate_json(ev.model_dump_json()) == ev


def test_same_send_same_identity_each_attempt_its_own_id():
    a, b = record(attempt=1), record(attempt=2, resend=True)
    assert a.send_id == b.send_id == send_id("k1", 0, "p-7", "email")
    assert a.id != b.id
    assert record(step=2).send_id != a.send_id


def test_an_id_not_of_its_fields_is_refused():
    with pytest.raises(ValidationError, match="id"):
        DeliveryRecord(**{**record().model_dump(), "id": "made-up"})


def test_accepted_needs_the_providers_id_and_failed_a_reason():
    with pytest.raises(ValidationError, match="provider_id"):
        record(provider_id=None)
    with pytest.raises(ValidationError, match="reason"):
        record(DeliveryState.FAILED, reason="")


def test_ack_id_one_per_notice_and_person_and_long_keys_fit():
    a = AckRecord(id=ack_id("k1", "p-7", "link"), dedup_key="k1", incident_id="i-1", person_id="p-7", at=T0, how=AckHow.LINK, by="link")
    assert DeliveryEvent.of(a).body == a
    long_key = "k" * 120
    assert len(ack_id(long_key, "p-7", "link")) <= 120
    assert ack_id(long_key, "p-7", "link") == ack_id(long_key, "p-7", "link")


def test_the_wrapper_is_keyed_by_its_bodys_notice():
    r = record()
    with pytest.raises(ValidationError, match="dedup_key"):
        DeliveryEvent(id=r.id, dedup_key="other", body=r)


def test_deliveries_share_the_notices_partitioning():
    assert DELIVERIES.key == NOTIFICATIONS_REQUESTED.key == "dedup_key"
    assert DELIVERIES.partitions == NOTIFICATIONS_REQUESTED.partitions
