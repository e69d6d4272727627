"""Delivery contracts (issue 19): what happened to each send, who acknowledged (已阅), and each step
of the re-notification ladder taken.

Everything about one notice travels on one topic, `yingji.deliveries`, keyed by the notice's
dedup_key, wrapped in a DeliveryEvent whose `body` says what it is. One topic and one key, not
three topics: a notice's sends, its acks and its ladder steps are then in order on one partition,
the same partition as the notice on notifications.requested (same key, same partition count), so
the delivery stage's state for a notice and the records that change it live together and a consumer
decodes one model. Ladder steps are not new notices: a step's sends and acks carry the notice's
dedup_key and the step's number, so an ack of any step is an ack of the notice.

Identity of a send: (dedup_key, step, person, channel); each attempt at it has a number and each
state of an attempt is recorded once, so a stage that runs twice writes the same ids.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from topics.models import (
    RECORD_ID_MAX,
    SCHEMA_VERSION,
    Contract,
    LongText,
    NotificationRequested,
    Post,
    RecordId,
    ShortText,
    UtcDatetime,
)

# A channel as the channels' YAML names it (email, wecom_office, dingtalk_leaders, sms_gateway …).
ChannelName = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")]
# 0: the notice itself; n: step n of the re-notification ladder.
Step = Annotated[int, Field(ge=0, le=20)]


def fit_id(text: str) -> str:
    """An id within a record id's length: past it, the tail becomes its digest (still stable).
    The same rule as playbooks.lifecycle's notice keys."""
    if len(text) <= RECORD_ID_MAX:
        return text
    return f"{text[:RECORD_ID_MAX - 33]}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def send_id(dedup_key: str, step: int, person_id: str, channel: str) -> str:
    """The identity of a send: the notice (and ladder step), the person, the channel."""
    return fit_id(f"{dedup_key}.s{step}.{person_id}.{channel}")


def delivery_id(dedup_key: str, step: int, person_id: str, channel: str, attempt: int, state: str) -> str:
    return fit_id(f"{dedup_key}.s{step}.{person_id}.{channel}.a{attempt}.{state}")


def ack_id(dedup_key: str, person_id: str | None, by: str) -> str:
    """One ack per notice and person (or per signed-in user acking for nobody in the directory)."""
    who = person_id if person_id is not None else f"user-{by}"
    return fit_id(f"{dedup_key}.ack.{who}")


def ladder_step_id(dedup_key: str, step: int) -> str:
    return fit_id(f"{dedup_key}.ladder{step}")


class DeliveryState(StrEnum):
    ATTEMPTED = "attempted"  # written before the send
    ACCEPTED = "accepted"  # the provider took it (its id in provider_id)
    FAILED = "failed"  # the provider refused or could not be reached (reason)
    IN_DOUBT = "in_doubt"  # an attempt with no result: the stage stopped between attempt and result
    DELIVERED = "delivered"  # the provider says it reached the person


DELIVERY_STATE_NAMES: dict[DeliveryState, str] = {
    DeliveryState.ATTEMPTED: "发送中",
    DeliveryState.ACCEPTED: "已发送",
    DeliveryState.FAILED: "发送失败",
    DeliveryState.IN_DOUBT: "结果不明",
    DeliveryState.DELIVERED: "已送达",
}


class DeliveryRecord(Contract):
    """One state of one attempt at one send (person, channel) of a notice or of a ladder step."""

    record: Literal["delivery"] = "delivery"
    id: RecordId
    dedup_key: RecordId = Field(description="the notice's dedup_key (a ladder step's too: `step` tells them apart)")
    step: Step = 0
    notice_id: RecordId
    incident_id: RecordId
    person_id: RecordId
    channel: ChannelName
    attempt: int = Field(ge=1, le=100)
    state: DeliveryState
    provider_id: ShortText | None = Field(default=None, description="the provider's id of the message (accepted)")
    reason: LongText = Field(default="", description="why it failed or is in doubt; never a contact or a secret")
    resend: bool = Field(default=False, description="a send after one in doubt: the message says 【重发】")
    retryable: bool = Field(default=False, description="failed: worth another try (a timeout, a rate limit, a 5xx)")
    digest: int = Field(default=1, ge=1, le=1000, description="notices in the one post this send went in (a robot's digest)")
    at: UtcDatetime
    drill: bool = False
    schema_version: int = SCHEMA_VERSION

    @property
    def send_id(self) -> str:
        return send_id(self.dedup_key, self.step, self.person_id, self.channel)

    @model_validator(mode="after")
    def _identity(self) -> "DeliveryRecord":
        expected = delivery_id(self.dedup_key, self.step, self.person_id, self.channel, self.attempt, self.state)
        if self.id != expected:
            raise ValueError(f"id: must be {expected} (notice, step, person, channel, attempt, state)")
        if self.state == DeliveryState.ACCEPTED and not self.provider_id:
            raise ValueError("provider_id: an accepted send names the provider's id")
        if self.state in (DeliveryState.FAILED, DeliveryState.IN_DOUBT) and not self.reason:
            raise ValueError(f"reason: a {self.state.value} send says why")
        return self


class AckHow(StrEnum):
    LINK = "link"  # POST from the ack link's page (a GET never acknowledges)
    PAGE = "page"  # the incident page, signed in
    API = "api"  # POST /notices/{id}/ack, signed in
    TEST = "test"  # a test message acknowledged: the contact is verified


class AckRecord(Contract):
    """已阅: a notice acknowledged, by whom, when and how. An ack of any ladder step is an ack of the
    notice: `step` only says which message the person answered."""

    record: Literal["ack"] = "ack"
    id: RecordId
    dedup_key: RecordId
    incident_id: RecordId = Field(description="the notice's incident (a test message's: `test`)")
    step: Step = 0
    person_id: RecordId | None = Field(description="who acknowledged, as the directory names them; None: a "
                                                   "signed-in user with no person in the directory")
    at: UtcDatetime
    how: AckHow
    by: ShortText = Field(description="the signed-in user, or `link` for the ack link")
    drill: bool = False
    schema_version: int = SCHEMA_VERSION

    @model_validator(mode="after")
    def _identity(self) -> "AckRecord":
        expected = ack_id(self.dedup_key, self.person_id, self.by)
        if self.id != expected:
            raise ValueError(f"id: must be {expected} (one ack per notice and person)")
        return self


class LadderStepTaken(Contract):
    """A step of the re-notification ladder taken at its own time (`at`: requested_at + minutes × step),
    whoever was found for it; its sends follow as DeliveryRecords with the same step. Recorded even
    when nobody was on duty for it, so each step is taken once across restarts."""

    record: Literal["ladder_step"] = "ladder_step"
    id: RecordId
    dedup_key: RecordId
    step: Step = Field(ge=1)
    incident_id: RecordId
    unit_id: ShortText
    role: ShortText
    post: Post
    person_id: RecordId | None = Field(default=None, description="the person on duty found for it; None: nobody")
    channels: list[ChannelName] = Field(default_factory=list, description="the channels the step's sends take")
    spare: list[ChannelName] = Field(default_factory=list, description="the person's channels a failed one fails over to, in order")
    at: UtcDatetime
    recorded_at: UtcDatetime
    reasons: list[LongText] = Field(default_factory=list)
    drill: bool = False
    schema_version: int = SCHEMA_VERSION

    @model_validator(mode="after")
    def _identity(self) -> "LadderStepTaken":
        if self.id != ladder_step_id(self.dedup_key, self.step):
            raise ValueError(f"id: must be {ladder_step_id(self.dedup_key, self.step)}")
        return self


def taken_id(dedup_key: str) -> str:
    return fit_id(f"{dedup_key}.taken")


def undeliverable_id(dedup_key: str, step: int) -> str:
    return fit_id(f"{dedup_key}.s{step}.undeliverable")


class NoticeTaken(Contract):
    """The delivery stage took a notice: the notice itself, the person it goes to and the channels,
    chosen once (channels.yaml's route and the person's contacts at that time). Everything the stage
    does for the notice after this is folded from this topic alone."""

    record: Literal["notice"] = "notice"
    id: RecordId
    dedup_key: RecordId
    notice: NotificationRequested
    person_id: RecordId | None = Field(description="the person on duty the notice names; None: nobody (the ladder starts)")
    channels: list[ChannelName] = Field(default_factory=list)
    spare: list[ChannelName] = Field(default_factory=list, description="the person's channels a failed one fails over to, in order")
    rule: ShortText = Field(description="channels.yaml's route")
    reasons: list[LongText] = Field(default_factory=list)
    at: UtcDatetime
    drill: bool = False
    schema_version: int = SCHEMA_VERSION

    @model_validator(mode="after")
    def _identity(self) -> "NoticeTaken":
        if self.id != taken_id(self.dedup_key) or self.notice.dedup_key != self.dedup_key:
            raise ValueError(f"id: must be {taken_id(self.dedup_key)}, of the notice with that dedup_key")
        return self


class Undeliverable(Contract):
    """Every channel of a step's person failed for good, or the step had nobody to send to: the notice
    is dead-lettered, shown on the board, and the ladder's next step is taken at once."""

    record: Literal["undeliverable"] = "undeliverable"
    id: RecordId
    dedup_key: RecordId
    step: Step = 0
    incident_id: RecordId
    person_id: RecordId | None = None
    reason: LongText
    at: UtcDatetime
    drill: bool = False
    schema_version: int = SCHEMA_VERSION

    @model_validator(mode="after")
    def _identity(self) -> "Undeliverable":
        if self.id != undeliverable_id(self.dedup_key, self.step):
            raise ValueError(f"id: must be {undeliverable_id(self.dedup_key, self.step)}")
        return self


DeliveryBody = Annotated[DeliveryRecord | AckRecord | LadderStepTaken | NoticeTaken | Undeliverable,
                         Field(discriminator="record")]


class DeliveryEvent(Contract):
    """One record of topic deliveries (key dedup_key): a send's state, an ack, or a ladder step."""

    id: RecordId
    dedup_key: RecordId
    body: DeliveryBody
    schema_version: int = SCHEMA_VERSION

    @model_validator(mode="after")
    def _same_record(self) -> "DeliveryEvent":
        if self.id != self.body.id:
            raise ValueError("id: must be the body's id")
        if self.dedup_key != self.body.dedup_key:
            raise ValueError("dedup_key: must be the body's dedup_key (the topic's key)")
        return self

    @classmethod
    def of(cls, body: DeliveryRecord | AckRecord | LadderStepTaken | NoticeTaken | Undeliverable) -> "DeliveryEvent":
        return cls(id=body.id, dedup_key=body.dedup_key, body=body)
