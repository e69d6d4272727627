"""playbooks/data/channels.yaml as a model: the delivery channels with their settings that are not
secret, and which channels a notice takes (issue 19 item 1). Pure: the adapters live in
services/delivery/channels.py; secrets are named here by their environment variable, never held."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from playbooks.duty.config import Sourced
from topics.duty import Contacts
from topics.models import NotificationRequested, ResponseLevel

CHANNELS_FILE = Path(__file__).resolve().parent.parent / "data" / "channels.yaml"

NOTICE_KINDS: tuple[str, ...] = get_args(NotificationRequested.model_fields["kind"].annotation)
LEVELS: tuple[str, ...] = tuple(level.value for level in ResponseLevel)

ChannelId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]*$")]


class ChannelsModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Rate(ChannelsModel):
    messages: int = Field(gt=0)
    seconds: int = Field(gt=0)


class ChannelBase(ChannelsModel):
    id: ChannelId
    label: str = Field(min_length=1)

    def needs(self) -> str:
        """The contact a person must have to be reached on this channel, as Contacts names it."""
        raise NotImplementedError

    def address(self, contacts: Contacts) -> str | None:
        raise NotImplementedError


class RobotChannel(ChannelBase):
    """A chat group robot: posts to its group, @-mentioning the person by mobile when known."""

    kind: Literal["wecom_robot", "dingtalk_robot"]
    chat_system: ChannelId = Field(description="the key of Contacts.chat_ids: the person is in the robot's group")
    url_env: EnvName = Field(description="the variable holding the webhook URL (its key or token is a secret)")
    secret_env: EnvName | None = Field(default=None, description="钉钉 加签 secret; required for dingtalk_robot")
    msgtype: Sourced[Literal["text", "markdown"]]
    rate: Sourced[Rate]
    retryable_errcodes: Sourced[list[int]]
    max_bytes: Sourced[int]
    delivered_on_accept: Sourced[bool] = Field(description="errcode 0 means the post is in the group, before the person: "
                                                           "recorded 已送达 at once")

    @model_validator(mode="after")
    def _signed(self) -> "RobotChannel":
        if self.kind == "dingtalk_robot" and self.secret_env is None:
            raise ValueError("secret_env: a 钉钉 robot is signed (加签); name the variable holding its secret")
        return self

    def needs(self) -> str:
        return f"chat_ids.{self.chat_system}"

    def address(self, contacts: Contacts) -> str | None:
        return contacts.chat_ids.get(self.chat_system)


class WebhookChannel(ChannelBase):
    """A generic JSON webhook signed with HMAC-SHA256: an office's own SMS or voice gateway."""

    kind: Literal["signed_webhook"]
    contact: Literal["mobile", "email"]
    url_env: EnvName
    secret_env: EnvName
    rate: Sourced[Rate] | None = None

    def needs(self) -> str:
        return self.contact

    def address(self, contacts: Contacts) -> str | None:
        return getattr(contacts, self.contact)


class Smtp(ChannelsModel):
    host: str = Field(min_length=1)
    port: int = Field(gt=0, lt=65536)
    security: Literal["ssl", "starttls", "plain"]
    from_address: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    username_env: EnvName | None = None
    password_env: EnvName | None = None
    timeout_seconds: Sourced[float]


class EmailChannel(ChannelBase):
    kind: Literal["email"]
    contact: Literal["email"]
    smtp: Smtp

    def needs(self) -> str:
        return "email"

    def address(self, contacts: Contacts) -> str | None:
        return contacts.email


Channel = Annotated[RobotChannel | WebhookChannel | EmailChannel, Field(discriminator="kind")]


class Route(ChannelsModel):
    id: ChannelId
    kinds: list[str] = Field(min_length=1)
    levels: list[str | None] | None = Field(default=None, description="None: any level; null in the list: no level")
    channels: list[ChannelId] = Field(min_length=1)
    source: str = Field(min_length=1)
    our_choice: bool

    def matches(self, kind: str, level: str | None) -> bool:
        return kind in self.kinds and (self.levels is None or level in self.levels)


class Retry(ChannelsModel):
    tries: Sourced[int] = Field(description="tries of one send, the first included")
    backoff_seconds: Sourced[list[float]] = Field(description="the wait before try 2, 3, …; the last repeats")

    def wait_after(self, attempt: int) -> float:
        waits = self.backoff_seconds.value
        return waits[min(attempt, len(waits)) - 1] if waits else 0.0


class ChannelsFile(ChannelsModel):
    channels: list[Channel] = Field(min_length=1)
    routes: list[Route] = Field(min_length=1)
    retry: Retry
    failover: Sourced[list[ChannelId]]
    drill: Sourced[dict[ChannelId, str]] = Field(description="channel -> the drill's address on it")

    @model_validator(mode="after")
    def _consistent(self) -> "ChannelsFile":
        ids = [c.id for c in self.channels]
        if len(set(ids)) != len(ids):
            raise ValueError(f"channels: ids must be unique, got {ids}")
        for i, route in enumerate(self.routes):
            for kind in route.kinds:
                if kind not in NOTICE_KINDS:
                    raise ValueError(f"routes[{i}].kinds: {kind!r} is not a notice kind {list(NOTICE_KINDS)}")
            for level in route.levels or []:
                if level is not None and level not in LEVELS:
                    raise ValueError(f"routes[{i}].levels: {level!r} is not a response level {list(LEVELS)}")
            for name in route.channels:
                if name not in ids:
                    raise ValueError(f"routes[{i}].channels: {name!r} is not a channel {ids}")
            if len(set(route.channels)) != len(route.channels):
                raise ValueError(f"routes[{i}].channels: a channel listed twice")
        for name in [*self.failover.value, *self.drill.value]:
            if name not in ids:
                raise ValueError(f"failover/drill: {name!r} is not a channel {ids}")
        if self.retry.tries.value < 1 or any(w < 0 for w in self.retry.backoff_seconds.value):
            raise ValueError("retry: at least one try, and no negative wait")
        for kind in NOTICE_KINDS:  # every notice has a route, whatever its level: none is left unsent
            for level in (*LEVELS, None):
                if not any(r.matches(kind, level) for r in self.routes):
                    raise ValueError(f"routes: no route for kind {kind!r} at level {level!r}")
        return self

    def channel(self, channel_id: str) -> RobotChannel | WebhookChannel | EmailChannel:
        return next(c for c in self.channels if c.id == channel_id)

    def route_for(self, kind: str, level: str | None) -> Route:
        if kind not in NOTICE_KINDS:
            raise ValueError(f"notice_kind: {kind!r} is not one of {list(NOTICE_KINDS)}")
        if level is not None and level not in LEVELS:
            raise ValueError(f"level: {level!r} is not one of {list(LEVELS)}")
        return next(r for r in self.routes if r.matches(kind, level))  # the validator guarantees one


@dataclass(frozen=True)
class ChannelChoice:
    """The channels a notice takes to one person, in order, each with the address on it; the spare
    channels it fails over to, in failover order; and why."""

    rule: str
    channels: list[str]
    addresses: dict[str, str]
    reasons: list[str] = field(default_factory=list)
    spare: list[str] = field(default_factory=list)


def choose_channels(notice_kind: str, level: str | None, contacts: Contacts, config: ChannelsFile) -> ChannelChoice:
    """The route's channels the person can be reached on, in the route's order; a channel is skipped,
    with the reason, when the person lacks the contact it needs."""
    route = config.route_for(notice_kind, level)
    chosen: list[str] = []
    addresses: dict[str, str] = {}
    reasons = [f"{route.id}: a {notice_kind} notice at level {level or '(none)'} takes {route.channels} ({route.source})"]
    for name in route.channels:
        channel = config.channel(name)
        address = channel.address(contacts)
        if address:
            chosen.append(name)
            addresses[name] = address
        else:
            reasons.append(f"{name} skipped: the person has no {channel.needs()}")
    spare: list[str] = []
    for name in config.failover.value:
        address = config.channel(name).address(contacts)
        if name not in route.channels and address:
            spare.append(name)
            addresses[name] = address
    if not chosen and spare:
        chosen, spare = spare[:1], spare[1:]
        reasons.append(f"none of the route's channels: the person's first channel in failover order, {chosen[0]}")
    if not chosen:
        reasons.append("no channel: the person has none of the contacts the route needs")
    return ChannelChoice(rule=route.id, channels=chosen, addresses=addresses, reasons=reasons, spare=spare)


def channels_for(notice_kind: str, level: str | None, contacts: Contacts, config: ChannelsFile) -> list[str]:
    """The ordered channels the person can be reached on (choose_channels has the reasons)."""
    return choose_channels(notice_kind, level, contacts, config).channels


def load_channels(path: Path = CHANNELS_FILE) -> ChannelsFile:
    try:
        return ChannelsFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ValueError as exc:
        raise ValueError(f"{path.name}: {exc}") from exc
