"""The delivery channels against real local servers on 127.0.0.1 (issue 19 item 1): aiosmtpd for SMTP,
and a Starlette app under uvicorn speaking the 企业微信 and 钉钉 robot contracts (the 钉钉 one checks
the signature; both answer errcode 45009 past 20 a minute) and a gateway checking the webhook's
signature. Time for the local limiter is an injected clock: nothing here sleeps for a rate window."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import uvicorn
import yaml
from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from structlog.testing import capture_logs

from playbooks.delivery.channels import CHANNELS_FILE, ChannelsFile
from services.delivery.channels import Accepted, Failed, MissingSecret, Outgoing, build_channels
from services.local.kafka import free_port

DINGTALK_SECRET = "SEC" + "0" * 8 + "test-only"
HOOK_SECRET = "hook-test-only"
ROBOT_LIMIT = 20


class FakeClock:
    def __init__(self) -> None:
        self.at = datetime.now(timezone.utc)  # 钉钉 refuses a timestamp an hour away from its own clock

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


# --- the local servers ------------------------------------------------------------------------


class RobotSink:
    """The robots' and the gateway's side: what they received, and their answers as documented."""

    def __init__(self) -> None:
        self.received: dict[str, list[dict]] = {}
        self.times: dict[str, list[float]] = {}
        self.hook_bodies: list[tuple[bytes, dict]] = []

    def _over_limit(self, robot: str) -> bool:
        now = time.monotonic()
        recent = [t for t in self.times.get(robot, []) if now - t < 60]
        self.times[robot] = [*recent, now]
        return len(recent) >= ROBOT_LIMIT

    async def wecom(self, request: Request) -> JSONResponse:
        key = request.query_params.get("key", "")
        if not key.startswith("k-"):
            return JSONResponse({"errcode": 93000, "errmsg": "invalid webhook url"})
        if self._over_limit(key):
            return JSONResponse({"errcode": 45009, "errmsg": "api freq out of limit"})
        self.received.setdefault(key, []).append(await request.json())
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    async def dingtalk(self, request: Request) -> JSONResponse:
        q = request.query_params
        token, timestamp, sign = q.get("access_token", ""), q.get("timestamp", ""), q.get("sign", "")
        expected = base64.b64encode(hmac.new(DINGTALK_SECRET.encode(), f"{timestamp}\n{DINGTALK_SECRET}".encode(),
                                             hashlib.sha256).digest()).decode()
        if not timestamp.isdigit() or abs(int(timestamp) - time.time() * 1000) > 3600_000:
            return JSONResponse({"errcode": 310000, "errmsg": "invalid timestamp"})
        if not hmac.compare_digest(sign, expected):
            return JSONResponse({"errcode": 310000, "errmsg": "sign not match"})
        if self._over_limit(token):
            return JSONResponse({"errcode": 45009, "errmsg": "send too fast"})
        self.received.setdefault(token, []).append(await request.json())
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    async def hook(self, request: Request) -> JSONResponse:
        body = await request.body()
        expected = "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("x-yingji-signature", ""), expected):
            return JSONResponse({"error": "bad signature"}, status_code=401)
        self.hook_bodies.append((body, dict(request.headers)))
        return JSONResponse({"id": f"gw-{len(self.hook_bodies)}"})


@pytest.fixture(scope="module")
def sink():
    sink = RobotSink()
    app = Starlette(routes=[Route("/cgi-bin/webhook/send", sink.wecom, methods=["POST"]),
                            Route("/robot/send", sink.dingtalk, methods=["POST"]),
                            Route("/sms", sink.hook, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the local robot server did not start"
        time.sleep(0.01)
    sink.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    yield sink
    server.should_exit = True
    thread.join(5)
    sock.close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.envelopes.append(envelope)
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@pytest.fixture(scope="module")
def smtp():
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, mailbox
    controller.stop()


# --- the channels under test --------------------------------------------------------------------


def config_for(*, smtp_port: int = 8025, rate: int = ROBOT_LIMIT) -> ChannelsFile:
    raw = yaml.safe_load(CHANNELS_FILE.read_text(encoding="utf-8"))
    for channel in raw["channels"]:
        if channel["kind"] == "email":
            channel["smtp"]["port"] = smtp_port
        if channel["kind"].endswith("_robot"):
            channel["rate"]["value"]["messages"] = rate
    return ChannelsFile.model_validate(raw)


def env_for(sink: RobotSink, robot: str | None = None, **over: str) -> dict[str, str]:
    robot = robot or uuid.uuid4().hex[:8]  # a robot of its own per test: the server counts per robot
    return {"YINGJI_WECOM_ROBOT_URL": f"{sink.base}/cgi-bin/webhook/send?key=k-{robot}",
            "YINGJI_DINGTALK_ROBOT_URL": f"{sink.base}/robot/send?access_token=t-{robot}",
            "YINGJI_DINGTALK_ROBOT_SECRET": DINGTALK_SECRET,
            "YINGJI_SMS_WEBHOOK_URL": f"{sink.base}/sms",
            "YINGJI_SMS_WEBHOOK_SECRET": HOOK_SECRET, **over}


def outgoing(address: str, **over) -> Outgoing:
    base = dict(dedup_key="inc-1:route.gas:unit.ry", person_id="p-zhang", address=address,
                subject="燃气泄漏 一级响应 请立即报告", text="**梨园镇** 燃气泄漏，请 10 分钟内电话报告。", mobile="13800138000")
    return Outgoing(**{**base, **over})


@pytest.fixture
async def client():
    async with httpx.AsyncClient(timeout=5) as c:
        yield c


# --- email ------------------------------------------------------------------------------------


async def test_email_arrives_with_its_message_id_prefixes_and_utf8(smtp, client):
    controller, mailbox = smtp
    channels = build_channels(config_for(smtp_port=controller.port), {}, client=client, only={"email"})
    first = await channels["email"].send(outgoing("zhang@example.cn"))
    again = await channels["email"].send(outgoing("zhang@example.cn", drill=True, resend=True))
    assert isinstance(first, Accepted) and isinstance(again, Accepted)
    assert first.provider_id == again.provider_id  # the same send's identity: a resend is recognisable
    digest = hashlib.sha256(b"inc-1:route.gas:unit.ry|p-zhang|email").hexdigest()[:32]
    assert first.provider_id == f"<{digest}@yingji>"
    plain, marked = mailbox.messages[-2:]
    assert plain["Message-ID"] == marked["Message-ID"] == f"<{digest}@yingji>"
    assert plain["Subject"] == "燃气泄漏 一级响应 请立即报告"
    assert marked["Subject"] == "【演练】【重发】燃气泄漏 一级响应 请立即报告"
    assert marked["X-Yingji-Resend"] == "yes" and "X-Yingji-Resend" not in plain
    assert "梨园镇" in plain.get_content() and plain.get_content_charset() == "utf-8"
    assert mailbox.envelopes[-1].rcpt_tos == ["zhang@example.cn"]


async def test_email_to_a_server_that_is_not_there_is_retryable(client):
    channels = build_channels(config_for(smtp_port=free_port()), {}, client=client, only={"email"})
    result = await channels["email"].send(outgoing("zhang@example.cn"))
    assert isinstance(result, Failed) and result.retryable


# --- 企业微信 ---------------------------------------------------------------------------------


async def test_wecom_good_send_is_accepted_with_an_id(sink, client):
    env = env_for(sink, "good")
    wecom = build_channels(config_for(), env, client=client, only={"wecom"})["wecom"]
    result = await wecom.send(outgoing("zhangsan"))
    assert isinstance(result, Accepted) and result.provider_id.startswith("wecom:")
    body = sink.received["k-good"][-1]
    assert body["msgtype"] == "text"
    assert body["text"]["mentioned_mobile_list"] == ["13800138000"] and body["text"]["mentioned_list"] == ["zhangsan"]
    assert body["text"]["content"].startswith("燃气泄漏 一级响应")


async def test_wecom_45009_is_a_retryable_failure(sink, client):
    wecom = build_channels(config_for(rate=1000), env_for(sink), client=client, only={"wecom"})["wecom"]
    results = [await wecom.send(outgoing("zhangsan", dedup_key=f"n-{i}")) for i in range(ROBOT_LIMIT + 1)]
    assert all(isinstance(r, Accepted) for r in results[:ROBOT_LIMIT])
    last = results[-1]
    assert isinstance(last, Failed) and last.retryable and "45009" in last.reason


async def test_a_robot_error_other_than_the_limit_is_not_retryable(sink, client):
    env = env_for(sink, YINGJI_WECOM_ROBOT_URL=f"{sink.base}/cgi-bin/webhook/send?key=wrong")
    wecom = build_channels(config_for(), env, client=client, only={"wecom"})["wecom"]
    result = await wecom.send(outgoing("zhangsan"))
    assert isinstance(result, Failed) and not result.retryable and "93000" in result.reason


@pytest.mark.parametrize("channel_id", ["wecom", "dingtalk"])
async def test_the_local_limiter_refuses_the_21st_in_a_minute_without_calling(sink, client, channel_id):
    clock = FakeClock()
    robot = uuid.uuid4().hex[:8]
    channel = build_channels(config_for(), env_for(sink, robot), client=client, clock=clock, only={channel_id})[channel_id]
    key = f"k-{robot}" if channel_id == "wecom" else f"t-{robot}"
    for i in range(ROBOT_LIMIT):
        assert isinstance(await channel.send(outgoing("zhangsan", dedup_key=f"n-{i}")), Accepted)
        clock.advance(2)  # 20 sends over 40 s
    refused = await channel.send(outgoing("zhangsan", dedup_key="n-20"))
    assert isinstance(refused, Failed) and refused.retryable and refused.reason.startswith("rate:")
    assert "frees in 20 s" in refused.reason
    assert len(sink.received[key]) == ROBOT_LIMIT  # the robot was not called
    clock.advance(20)  # the first send leaves the window
    # the server's own window is real time: open it for this robot, as a minute passing would
    sink.times[key] = []
    assert isinstance(await channel.send(outgoing("zhangsan", dedup_key="n-21")), Accepted)


# --- 钉钉 -------------------------------------------------------------------------------------


async def test_dingtalk_signed_send_is_accepted(sink, client):
    ding = build_channels(config_for(), env_for(sink, "good"), client=client, only={"dingtalk"})["dingtalk"]
    result = await ding.send(outgoing("zs01", drill=True))
    assert isinstance(result, Accepted) and result.provider_id
    body = sink.received["t-good"][-1]
    assert body["msgtype"] == "markdown" and body["markdown"]["title"] == "【演练】燃气泄漏 一级响应 请立即报告"
    assert body["at"]["atMobiles"] == ["13800138000"] and "@13800138000" in body["markdown"]["text"]


async def test_dingtalk_wrong_signature_is_a_failure(sink, client):
    env = env_for(sink, YINGJI_DINGTALK_ROBOT_SECRET="SECnot-the-robots")
    ding = build_channels(config_for(), env, client=client, only={"dingtalk"})["dingtalk"]
    result = await ding.send(outgoing("zs01"))
    assert isinstance(result, Failed) and not result.retryable and "310000" in result.reason


async def test_dingtalk_45009_is_a_retryable_failure(sink, client):
    ding = build_channels(config_for(rate=1000), env_for(sink), client=client, only={"dingtalk"})["dingtalk"]
    results = [await ding.send(outgoing("zs01", dedup_key=f"n-{i}")) for i in range(ROBOT_LIMIT + 1)]
    assert all(isinstance(r, Accepted) for r in results[:ROBOT_LIMIT])
    assert isinstance(results[-1], Failed) and results[-1].retryable and "45009" in results[-1].reason


# --- the signed webhook -------------------------------------------------------------------------


async def test_webhook_signature_verifies_on_the_server(sink, client):
    sms = build_channels(config_for(), env_for(sink), client=client, only={"sms"})["sms"]
    result = await sms.send(outgoing("13800138000", resend=True))
    assert isinstance(result, Accepted) and result.provider_id.startswith("gw-")
    body, headers = sink.hook_bodies[-1]
    sent = json.loads(body)
    assert sent["to"] == "13800138000" and sent["subject"].startswith("【重发】") and sent["resend"] is True
    assert headers["x-yingji-timestamp"] == str(sent["timestamp"])  # the timestamp is inside the signed body
    assert headers["idempotency-key"] == sent["id"]


async def test_webhook_with_the_wrong_secret_is_refused(sink, client):
    sms = build_channels(config_for(), env_for(sink, YINGJI_SMS_WEBHOOK_SECRET="guess"), client=client, only={"sms"})["sms"]
    result = await sms.send(outgoing("13800138000"))
    assert isinstance(result, Failed) and not result.retryable and "401" in result.reason


# --- start-up and logs --------------------------------------------------------------------------


@pytest.mark.parametrize(("missing", "channel_id"), [
    ("YINGJI_DINGTALK_ROBOT_SECRET", "dingtalk"), ("YINGJI_WECOM_ROBOT_URL", "wecom"),
    ("YINGJI_SMS_WEBHOOK_SECRET", "sms"), ("YINGJI_SMS_WEBHOOK_URL", "sms")])
async def test_a_channel_without_its_secret_is_a_start_up_error_naming_it(sink, client, missing, channel_id):
    env = env_for(sink)
    del env[missing]
    with pytest.raises(MissingSecret, match=f"channel {channel_id}: {missing} is not set"):
        build_channels(config_for(), env, client=client)


async def test_a_secret_may_come_from_a_file(sink, client, tmp_path):
    path = tmp_path / "dingtalk.secret"
    path.write_text(DINGTALK_SECRET + "\n", encoding="utf-8")
    env = env_for(sink, "fromfile")
    del env["YINGJI_DINGTALK_ROBOT_SECRET"]
    env["YINGJI_DINGTALK_ROBOT_SECRET_FILE"] = str(path)
    ding = build_channels(config_for(), env, client=client, only={"dingtalk"})["dingtalk"]
    assert isinstance(await ding.send(outgoing("zs01")), Accepted)
    env["YINGJI_DINGTALK_ROBOT_SECRET_FILE"] = str(tmp_path / "absent")
    with pytest.raises(MissingSecret, match="channel dingtalk: YINGJI_DINGTALK_ROBOT_SECRET_FILE cannot be read"):
        build_channels(config_for(), env, client=client)


async def test_logs_name_the_send_never_the_address_or_the_text(sink, smtp, client):
    controller, _ = smtp
    channels = build_channels(config_for(smtp_port=controller.port), env_for(sink), client=client)
    with capture_logs() as logs:
        for channel_id, address in [("email", "zhang@example.cn"), ("wecom", "zhangsan"), ("dingtalk", "zs01"), ("sms", "13800138000")]:
            await channels[channel_id].send(outgoing(address))
        await build_channels(config_for(), env_for(sink, YINGJI_SMS_WEBHOOK_SECRET="x"), client=client, only={"sms"})["sms"].send(outgoing("13800138000"))
    assert [(e["channel"], e["outcome"]) for e in logs] == [
        ("email", "accepted"), ("wecom", "accepted"), ("dingtalk", "accepted"), ("sms", "accepted"), ("sms", "failed")]
    text = repr(logs)
    for private in ("zhang@example.cn", "zhangsan", "zs01", "13800138000", "梨园镇", "燃气泄漏"):
        assert private not in text
    assert all(e["dedup_key"] == "inc-1:route.gas:unit.ry" for e in logs)
