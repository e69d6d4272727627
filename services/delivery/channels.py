"""The delivery channels' adapters (issue 19 item 1): one interface, Channel.send(Outgoing) ->
SendResult, behind which email over SMTP, the 企业微信 and 钉钉 group robots and a generic signed JSON
webhook (an office's SMS or voice gateway) each sit.

Built once at start-up by build_channels from playbooks/data/channels.yaml and the environment: a
channel without its secret is a start-up error naming the channel and the variable. Secrets live in
the environment or in files (VAR_FILE), never in the repository, a topic or a log. A log line names
the dedup key, the channel and the outcome; never the recipient's address or the message's text."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import quote_plus

import aiosmtplib
import httpx
import structlog

from playbooks.delivery.channels import ChannelsFile, EmailChannel, Rate, RobotChannel, WebhookChannel
from services.clock import Clock, WallClock

log = structlog.get_logger("yingji.delivery")

DRILL_PREFIX = "【演练】"
RESEND_PREFIX = "【重发】"


@dataclass(frozen=True)
class Outgoing:
    """One message to one person on one channel. (dedup_key, person_id, channel) is a send's identity."""

    dedup_key: str
    person_id: str
    address: str  # the contact the channel needs: a mail address, a mobile, or the person's id on a chat system
    subject: str
    text: str  # markdown allowed: the robots render it, email sends it as text/plain
    drill: bool = False
    resend: bool = False  # a send recorded in doubt, sent again: marked 【重发】
    mobile: str | None = None  # for a robot: @-mention by mobile when known

    def title(self) -> str:
        return (DRILL_PREFIX if self.drill else "") + (RESEND_PREFIX if self.resend else "") + self.subject


@dataclass(frozen=True)
class Accepted:
    provider_id: str
    ok: bool = True


@dataclass(frozen=True)
class Failed:
    reason: str
    retryable: bool
    ok: bool = False


SendResult = Accepted | Failed


class Channel(Protocol):
    id: str

    async def send(self, message: Outgoing) -> SendResult: ...


def send_id(message: Outgoing, channel_id: str) -> str:
    """The identity of a send, the same on every try: sha256(dedup_key|person|channel), 32 hex digits."""
    return hashlib.sha256(f"{message.dedup_key}|{message.person_id}|{channel_id}".encode()).hexdigest()[:32]


def _logged(channel_id: str, message: Outgoing, result: SendResult) -> SendResult:
    if isinstance(result, Accepted):
        log.info("delivery sent", channel=channel_id, dedup_key=message.dedup_key, outcome="accepted",
                 provider_id=result.provider_id, resend=message.resend)
    else:
        log.warning("delivery failed", channel=channel_id, dedup_key=message.dedup_key, outcome="failed",
                    reason=result.reason, retryable=result.retryable, resend=message.resend)
    return result


class SlidingWindow:
    """At most `rate.messages` in any `rate.seconds`, on the injected clock: a robot's limit kept
    locally, so the robot never has to refuse (钉钉 blocks a robot for 10 minutes past it)."""

    def __init__(self, rate: Rate, clock: Clock):
        self._limit = rate.messages
        self._window = timedelta(seconds=rate.seconds)
        self._clock = clock
        self._sent: deque = deque()

    def same_rate(self, other: "SlidingWindow") -> bool:
        return (self._limit, self._window) == (other._limit, other._window)

    def try_acquire(self) -> bool:
        now = self._clock.now()
        while self._sent and now - self._sent[0] >= self._window:
            self._sent.popleft()
        if len(self._sent) >= self._limit:
            return False
        self._sent.append(now)
        return True

    def fill(self) -> None:
        """The window counted full from now: the robot refused for its limit (it counts sends this
        process no longer remembers, from before a restart)."""
        now = self._clock.now()
        self._sent = deque([now] * self._limit)

    def retry_after(self) -> float:
        """Seconds until a place frees up (0 when one is free now)."""
        if len(self._sent) < self._limit:
            return 0.0
        return max(0.0, (self._sent[0] + self._window - self._clock.now()).total_seconds())


# --- email ----------------------------------------------------------------------------------


class EmailSender:
    """Email over SMTP with aiosmtplib: SSL, STARTTLS or plain as configured. The Message-ID is derived
    from the dedup key, the person and the channel, so a resend is recognisable to the receiving side."""

    def __init__(self, config: EmailChannel, *, username: str | None, password: str | None, clock: Clock):
        self.id = config.id
        self._smtp = config.smtp
        self._username = username
        self._password = password
        self._clock = clock

    def message_id(self, message: Outgoing) -> str:
        return f"<{send_id(message, self.id)}@yingji>"

    def compose(self, message: Outgoing) -> EmailMessage:
        mail = EmailMessage()  # the email package encodes UTF-8 headers (RFC 2047) and body
        mail["From"] = self._smtp.from_address
        mail["To"] = message.address
        mail["Subject"] = message.title()
        mail["Message-ID"] = self.message_id(message)
        mail["Date"] = format_datetime(self._clock.now())
        mail["X-Yingji-Dedup-Key"] = message.dedup_key
        if message.resend:
            mail["X-Yingji-Resend"] = "yes"
        mail.set_content(message.text, charset="utf-8")
        return mail

    async def send(self, message: Outgoing) -> SendResult:
        mail = self.compose(message)
        smtp = self._smtp
        try:
            await aiosmtplib.send(
                mail, hostname=smtp.host, port=smtp.port,
                use_tls=smtp.security == "ssl", start_tls=smtp.security == "starttls",
                username=self._username, password=self._password, timeout=smtp.timeout_seconds.value)
        except aiosmtplib.SMTPRecipientsRefused:
            return _logged(self.id, message, Failed("smtp: recipient refused", retryable=False))
        except aiosmtplib.SMTPResponseException as exc:
            transient = 400 <= exc.code < 500
            return _logged(self.id, message, Failed(f"smtp: {exc.code} {exc.message[:200]}", retryable=transient))
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return _logged(self.id, message, Failed(f"smtp: {type(exc).__name__}", retryable=True))
        return _logged(self.id, message, Accepted(self.message_id(message)))


# --- HTTP channels --------------------------------------------------------------------------


async def _post(client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response | Failed:
    try:
        return await client.post(url, content=body, headers={"Content-Type": "application/json", **headers})
    except httpx.TimeoutException:
        return Failed("http: timed out (the message may have arrived)", retryable=True)
    except httpx.HTTPError as exc:
        return Failed(f"http: {type(exc).__name__}", retryable=True)


def _robot_answer(response: httpx.Response, retryable_errcodes: list[int], fallback_id: str) -> SendResult:
    """A robot answers HTTP 200 with {errcode, errmsg}: anything but errcode 0 is a failure."""
    if response.status_code != 200:
        return Failed(f"http {response.status_code}", retryable=response.status_code >= 500 or response.status_code == 429)
    try:
        answer = response.json()
        errcode = int(answer["errcode"])
    except (ValueError, KeyError, TypeError):
        return Failed("robot: an answer without errcode", retryable=False)
    if errcode != 0:
        errmsg = str(answer.get("errmsg", ""))[:200]
        return Failed(f"robot: errcode {errcode} {errmsg}", retryable=errcode in retryable_errcodes)
    return Accepted(str(answer.get("msgid") or answer.get("processQueryKey") or fallback_id))


class RobotSender:
    """A chat group robot (企业微信 or 钉钉): posts the message to its group, @-mentioning the person,
    at most the configured rate (a sliding window on the injected clock, refusing locally)."""

    def __init__(self, config: RobotChannel, *, url: str, secret: str | None, client: httpx.AsyncClient, clock: Clock):
        self.id = config.id
        self._config = config
        self._url = url
        self._secret = secret
        self._client = client
        self._clock = clock
        self.limiter = SlidingWindow(config.rate.value, clock)

    def body(self, message: Outgoing) -> dict:
        return self.digest_body([message])

    @property
    def max_bytes(self) -> int:
        return self._config.max_bytes.value

    def digest_body(self, messages: list[Outgoing]) -> dict:
        """One post for one or several messages (a digest when the robot's minute is full), every person
        @-mentioned. content_bytes() of it is what the robot's 2048-byte limit counts."""
        entries = [fit(f"{m.title()}\n{m.text}", self.max_bytes - 160) for m in messages]  # room for the mentions
        text = entries[0] if len(entries) == 1 else \
            f"汇总 {len(entries)} 条通知\n" + "\n\n".join(f"{i}. {e}" for i, e in enumerate(entries, start=1))
        mobiles = list(dict.fromkeys(m.mobile for m in messages if m.mobile))
        users = list(dict.fromkeys(m.address for m in messages))
        if self._config.kind == "wecom_robot":
            if self._config.msgtype.value == "markdown":
                mentions = "".join(f"<@{u}>" for u in users)
                return {"msgtype": "markdown", "markdown": {"content": f"{text}\n{mentions}"}}
            return {"msgtype": "text", "text": {"content": text, "mentioned_list": users,
                                                "mentioned_mobile_list": mobiles}}
        at = {"atMobiles": mobiles, "atUserIds": users, "isAtAll": False}
        mention = ("\n\n" + " ".join(f"@{m}" for m in mobiles)) if mobiles else ""  # 钉钉: the text must name @mobile
        title = messages[0].title() if len(messages) == 1 else f"汇总 {len(messages)} 条通知"
        if self._config.msgtype.value == "markdown":
            return {"msgtype": "markdown", "markdown": {"title": title, "text": f"### {text}{mention}"}, "at": at}
        return {"msgtype": "text", "text": {"content": text + mention}, "at": at}

    def content_bytes(self, messages: list[Outgoing]) -> int:
        """The UTF-8 bytes of the post's text as the robot counts them (its content or text field)."""
        body = self.digest_body(messages)
        part = body[body["msgtype"]]
        return len((part.get("content") or part.get("text") or "").encode())

    def signed_url(self) -> str:
        """钉钉 加签: sign = urlencode(base64(HmacSHA256(secret, f"{timestamp_ms}\\n{secret}")))."""
        if self._secret is None:
            return self._url
        timestamp = str(math.floor(self._clock.now().timestamp() * 1000))
        return f"{self._url}{'&' if '?' in self._url else '?'}timestamp={timestamp}&sign={dingtalk_sign(timestamp, self._secret)}"

    async def send(self, message: Outgoing) -> SendResult:
        return await self.send_digest([message])

    async def send_digest(self, messages: list[Outgoing]) -> SendResult:
        """One post for the messages; the result is every message's (one provider id for all)."""
        first = messages[0]
        if not self.limiter.try_acquire():
            rate = self._config.rate.value
            return _logged(self.id, first, Failed(
                f"rate: {rate.messages} a robot in {rate.seconds} s reached; a place frees in {self.limiter.retry_after():.0f} s",
                retryable=True))
        body = json.dumps(self.digest_body(messages), ensure_ascii=False).encode()
        response = await _post(self._client, self.signed_url(), body, {})
        if isinstance(response, Failed):
            return _logged(self.id, first, response)
        return _logged(self.id, first, _robot_answer(
            response, self._config.retryable_errcodes.value, f"{self.id}:{send_id(first, self.id)}"))


def fit(text: str, max_bytes: int) -> str:
    """The text cut to max_bytes of UTF-8 at a character boundary, marked … when cut (a robot refuses
    a longer content; folding a burst into digests within the limit is the delivery stage's)."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    return data[: max_bytes - 3].decode(errors="ignore") + "…"


def dingtalk_sign(timestamp: str, secret: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode())


def webhook_signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    """A generic JSON webhook: the body carries the send's id and timestamp, and the header
    X-Yingji-Signature is sha256=<hex HMAC-SHA256 of the raw body>, so the timestamp (also in
    X-Yingji-Timestamp) is signed and a receiver refuses a replay by it. 2xx is accepted; the
    gateway's own id (its `id` field) is kept when it answers one."""

    def __init__(self, config: WebhookChannel, *, url: str, secret: str, client: httpx.AsyncClient, clock: Clock):
        self.id = config.id
        self._url = url
        self._secret = secret
        self._client = client
        self._clock = clock
        self.limiter = SlidingWindow(config.rate.value, clock) if config.rate else None

    async def send(self, message: Outgoing) -> SendResult:
        if self.limiter and not self.limiter.try_acquire():
            return _logged(self.id, message, Failed("rate: the gateway's limit reached", retryable=True))
        timestamp = str(math.floor(self._clock.now().timestamp()))
        sid = send_id(message, self.id)
        body = json.dumps({
            "id": sid, "dedup_key": message.dedup_key, "person_id": message.person_id, "to": message.address,
            "subject": message.title(), "text": message.text, "drill": message.drill, "resend": message.resend,
            "timestamp": int(timestamp),
        }, ensure_ascii=False).encode()
        headers = {"X-Yingji-Signature": webhook_signature(body, self._secret), "X-Yingji-Timestamp": timestamp,
                   "Idempotency-Key": sid}
        response = await _post(self._client, self._url, body, headers)
        if isinstance(response, Failed):
            return _logged(self.id, message, response)
        if not 200 <= response.status_code < 300:
            code = response.status_code
            return _logged(self.id, message, Failed(f"http {code}", retryable=code >= 500 or code in (408, 429)))
        try:
            provider_id = str(response.json().get("id") or sid)
        except (ValueError, AttributeError):
            provider_id = sid
        return _logged(self.id, message, Accepted(provider_id))


# --- the composition ------------------------------------------------------------------------


class MissingSecret(ValueError):
    """A configured channel without its secret: the service does not start."""


def secret(env: Mapping[str, str], name: str, channel_id: str, *, required: bool = True) -> str | None:
    """The variable's value, or the content of the file its NAME_FILE names (a mounted secret)."""
    value = env.get(name)
    if not value and env.get(f"{name}_FILE"):
        path = Path(env[f"{name}_FILE"])
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise MissingSecret(f"channel {channel_id}: {name}_FILE cannot be read ({exc.strerror})") from exc
    if not value and required:
        raise MissingSecret(f"channel {channel_id}: {name} is not set (nor {name}_FILE)")
    return value or None


def build_channels(config: ChannelsFile, env: Mapping[str, str], *, client: httpx.AsyncClient,
                   clock: Clock | None = None, only: set[str] | None = None) -> dict[str, Channel]:
    """Every configured channel (or those in `only`), by id. The caller passes the environment it was
    given (services/settings.py is the one reader of os.environ) and the one HTTP client it owns."""
    clock = clock or WallClock()
    built: dict[str, Channel] = {}
    for channel in config.channels:
        if only is not None and channel.id not in only:
            continue
        if isinstance(channel, EmailChannel):
            username = secret(env, channel.smtp.username_env, channel.id, required=False) if channel.smtp.username_env else None
            password = secret(env, channel.smtp.password_env, channel.id, required=False) if channel.smtp.password_env else None
            if (username is None) != (password is None):
                missing = channel.smtp.password_env if password is None else channel.smtp.username_env
                raise MissingSecret(f"channel {channel.id}: {missing} is not set, though its pair is")
            built[channel.id] = EmailSender(channel, username=username, password=password, clock=clock)
        elif isinstance(channel, RobotChannel):
            url = secret(env, channel.url_env, channel.id)
            key = secret(env, channel.secret_env, channel.id) if channel.secret_env else None
            built[channel.id] = RobotSender(channel, url=url, secret=key, client=client, clock=clock)
        else:
            built[channel.id] = WebhookSender(channel, url=secret(env, channel.url_env, channel.id),
                                              secret=secret(env, channel.secret_env, channel.id), client=client, clock=clock)
    return built
