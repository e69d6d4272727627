"""The delivery channels against real local servers on 127.0.0.1 (issue 19 item 1), the sinks `make
run` starts (services/local/sinks.py): aiosmtpd keeping a Maildir, and a Starlette app under uvicorn
speaking the 企业微信 and 钉钉 robot contracts (the 钉钉 one checks the signature; both answer errcode
45009 past 20 a minute) and a gateway checking the webhook's signature. Time for the local limiter
and the robots' window is an injected clock: nothing here sleeps for a rate window."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import yaml
from structlog.testing import capture_logs

from playbooks.delivery.channels import CHANNELS_FILE, ChannelsFile
from services.delivery.channels import Accepted, Failed, MissingSecret, Outgoing, build_channels
from services.clock import SimulatedClock
from services.local.kafka import free_port
from services.local.sinks import ROBOT_LIMIT, RobotSink, Sinks

DINGTALK_SECRET = "SEC" + "0" * 8 + "test-only"
HOOK_SECRET = "hook-test-only"


class FakeClock:
    def __init__(self) -> None:
        self.at = datetime.now(timezone.utc)  # 钉钉 refuses a timestamp an hour away from its own clock

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


# --- the local servers: services/local/sinks.py, with this module's secrets -----------------------


@pytest.fixture(scope="module")
def sinks(tmp_path_factory):
    """The robots' window runs on `sinks.robots.clock`: a test opens it by advancing that clock."""
    clock = SimulatedClock(datetime.now(timezone.utc))
    robots = RobotSink(dingtalk_secret=DINGTALK_SECRET, sms_secret=HOOK_SECRET, clock=clock,
                       accepts_key=lambda key: key.startswith("k-"))
    with Sinks.on_free_ports(tmp_path_factory.mktemp("sinks"), robots=robots) as started:
        yield started


# --- the channels under test --------------------------------------------------------------------


def config_for(*, smtp_port: int = 8025, rate: int = ROBOT_LIMIT) -> ChannelsFile:
    raw = yaml.safe_load(CHANNELS_FILE.read_text(encoding="utf-8"))
    for channel in raw["channels"]:
        if channel["kind"] == "email":
            channel["smtp"]["port"] = smtp_port
        if channel["kind"].endswith("_robot"):
            channel["rate"]["value"]["messages"] = rate
    return ChannelsFile.model_validate(raw)


def env_for(sinks: Sinks, robot: str | None = None, **over: str) -> dict[str, str]:
    robot = robot or uuid.uuid4().hex[:8]  # a robot of its own per test: the server counts per robot
    return {"YINGJI_WECOM_ROBOT_URL": f"{sinks.http_url}/cgi-bin/webhook/send?key=k-{robot}",
            "YINGJI_DINGTALK_ROBOT_URL": f"{sinks.http_url}/robot/send?access_token=t-{robot}",
            "YINGJI_DINGTALK_ROBOT_SECRET": DINGTALK_SECRET,
            "YINGJI_SMS_WEBHOOK_URL": f"{sinks.http_url}/sms",
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


async def test_email_arrives_with_its_message_id_prefixes_and_utf8(sinks, client):
    channels = build_channels(config_for(smtp_port=sinks.smtp_port), {}, client=client, only={"email"})
    first = await channels["email"].send(outgoing("zhang@example.cn"))
    again = await channels["email"].send(outgoing("zhang@example.cn", drill=True, resend=True))
    assert isinstance(first, Accepted) and isinstance(again, Accepted)
    assert first.provider_id == again.provider_id  # the same send's identity: a resend is recognisable
    digest = hashlib.sha256(b"inc-1:route.gas:unit.ry|p-zhang|email").hexdigest()[:32]
    assert first.provider_id == f"<{digest}@yingji>"
    plain, marked = sinks.mail.messages()[-2:]
    assert plain["Message-ID"] == marked["Message-ID"] == f"<{digest}@yingji>"
    assert plain["Subject"] == "燃气泄漏 一级响应 请立即报告"
    assert marked["Subject"] == "【演练】【重发】燃气泄漏 一级响应 请立即报告"
    assert marked["X-Yingji-Resend"] == "yes" and "X-Yingji-Resend" not in plain
    assert "梨园镇" in plain.get_content() and plain.get_content_charset() == "utf-8"
    assert marked.get_all("Delivered-To") == ["zhang@example.cn"]  # the envelope's recipient


async def test_email_to_a_server_that_is_not_there_is_retryable(client):
    channels = build_channels(config_for(smtp_port=free_port()), {}, client=client, only={"email"})
    result = await channels["email"].send(outgoing("zhang@example.cn"))
    assert isinstance(result, Failed) and result.retryable


# --- 企业微信 ---------------------------------------------------------------------------------


async def test_wecom_good_send_is_accepted_with_an_id(sinks, client):
    env = env_for(sinks, "good")
    wecom = build_channels(config_for(), env, client=client, only={"wecom"})["wecom"]
    result = await wecom.send(outgoing("zhangsan"))
    assert isinstance(result, Accepted) and result.provider_id.startswith("wecom:")
    body = sinks.robots.received("wecom", "k-good")[-1]
    assert body["msgtype"] == "text"
    assert body["text"]["mentioned_mobile_list"] == ["13800138000"] and body["text"]["mentioned_list"] == ["zhangsan"]
    assert body["text"]["content"].startswith("燃气泄漏 一级响应")


async def test_wecom_45009_is_a_retryable_failure(sinks, client):
    wecom = build_channels(config_for(rate=1000), env_for(sinks), client=client, only={"wecom"})["wecom"]
    results = [await wecom.send(outgoing("zhangsan", dedup_key=f"n-{i}")) for i in range(ROBOT_LIMIT + 1)]
    assert all(isinstance(r, Accepted) for r in results[:ROBOT_LIMIT])
    last = results[-1]
    assert isinstance(last, Failed) and last.retryable and "45009" in last.reason


async def test_a_robot_error_other_than_the_limit_is_not_retryable(sinks, client):
    env = env_for(sinks, YINGJI_WECOM_ROBOT_URL=f"{sinks.http_url}/cgi-bin/webhook/send?key=wrong")
    wecom = build_channels(config_for(), env, client=client, only={"wecom"})["wecom"]
    result = await wecom.send(outgoing("zhangsan"))
    assert isinstance(result, Failed) and not result.retryable and "93000" in result.reason


@pytest.mark.parametrize("channel_id", ["wecom", "dingtalk"])
async def test_the_local_limiter_refuses_the_21st_in_a_minute_without_calling(sinks, client, channel_id):
    clock = FakeClock()
    robot = uuid.uuid4().hex[:8]
    channel = build_channels(config_for(), env_for(sinks, robot), client=client, clock=clock, only={channel_id})[channel_id]
    key = f"k-{robot}" if channel_id == "wecom" else f"t-{robot}"
    robot_kind = "wecom" if channel_id == "wecom" else "dingtalk"
    for i in range(ROBOT_LIMIT):
        assert isinstance(await channel.send(outgoing("zhangsan", dedup_key=f"n-{i}")), Accepted)
        clock.advance(2)  # 20 sends over 40 s
    refused = await channel.send(outgoing("zhangsan", dedup_key="n-20"))
    assert isinstance(refused, Failed) and refused.retryable and refused.reason.startswith("rate:")
    assert "frees in 20 s" in refused.reason
    assert len(sinks.robots.received(robot_kind, key)) == ROBOT_LIMIT  # the robot was not called
    clock.advance(20)  # the first send leaves the window
    sinks.robots.clock.advance(timedelta(seconds=60))  # the robot's own window, on its own clock, passes too
    assert isinstance(await channel.send(outgoing("zhangsan", dedup_key="n-21")), Accepted)


# --- 钉钉 -------------------------------------------------------------------------------------


async def test_dingtalk_signed_send_is_accepted(sinks, client):
    ding = build_channels(config_for(), env_for(sinks, "good"), client=client, only={"dingtalk"})["dingtalk"]
    result = await ding.send(outgoing("zs01", drill=True))
    assert isinstance(result, Accepted) and result.provider_id
    body = sinks.robots.received("dingtalk", "t-good")[-1]
    assert body["msgtype"] == "markdown" and body["markdown"]["title"] == "【演练】燃气泄漏 一级响应 请立即报告"
    assert body["at"]["atMobiles"] == ["13800138000"] and "@13800138000" in body["markdown"]["text"]


async def test_dingtalk_wrong_signature_is_a_failure(sinks, client):
    env = env_for(sinks, YINGJI_DINGTALK_ROBOT_SECRET="SECnot-the-robots")
    ding = build_channels(config_for(), env, client=client, only={"dingtalk"})["dingtalk"]
    result = await ding.send(outgoing("zs01"))
    assert isinstance(result, Failed) and not result.retryable and "310000" in result.reason


async def test_dingtalk_45009_is_a_retryable_failure(sinks, client):
    ding = build_channels(config_for(rate=1000), env_for(sinks), client=client, only={"dingtalk"})["dingtalk"]
    results = [await ding.send(outgoing("zs01", dedup_key=f"n-{i}")) for i in range(ROBOT_LIMIT + 1)]
    assert all(isinstance(r, Accepted) for r in results[:ROBOT_LIMIT])
    assert isinstance(results[-1], Failed) and results[-1].retryable and "45009" in results[-1].reason


# --- the signed webhook -------------------------------------------------------------------------


async def test_webhook_signature_verifies_on_the_server(sinks, client):
    sms = build_channels(config_for(), env_for(sinks), client=client, only={"sms"})["sms"]
    result = await sms.send(outgoing("13800138000", resend=True))
    assert isinstance(result, Accepted) and result.provider_id.startswith("gw-")
    kept = sinks.robots.messages["sms"][-1]
    sent, headers = kept["body"], kept["headers"]
    assert kept["id"] == result.provider_id
    assert sent["to"] == "13800138000" and sent["subject"].startswith("【重发】") and sent["resend"] is True
    assert headers["x-yingji-timestamp"] == str(sent["timestamp"])  # the timestamp is inside the signed body
    assert headers["idempotency-key"] == sent["id"]


async def test_webhook_with_the_wrong_secret_is_refused(sinks, client):
    sms = build_channels(config_for(), env_for(sinks, YINGJI_SMS_WEBHOOK_SECRET="guess"), client=client, only={"sms"})["sms"]
    result = await sms.send(outgoing("13800138000"))
    assert isinstance(result, Failed) and not result.retryable and "401" in result.reason


# --- start-up and logs --------------------------------------------------------------------------


@pytest.mark.parametrize(("missing", "channel_id"), [
    ("YINGJI_DINGTALK_ROBOT_SECRET", "dingtalk"), ("YINGJI_WECOM_ROBOT_URL", "wecom"),
    ("YINGJI_SMS_WEBHOOK_SECRET", "sms"), ("YINGJI_SMS_WEBHOOK_URL", "sms")])
async def test_a_channel_without_its_secret_is_a_start_up_error_naming_it(sinks, client, missing, channel_id):
    env = env_for(sinks)
    del env[missing]
    with pytest.raises(MissingSecret, match=f"channel {channel_id}: {missing} is not set"):
        build_channels(config_for(), env, client=client)


async def test_a_secret_may_come_from_a_file(sinks, client, tmp_path):
    path = tmp_path / "dingtalk.secret"
    path.write_text(DINGTALK_SECRET + "\n", encoding="utf-8")
    env = env_for(sinks, "fromfile")
    del env["YINGJI_DINGTALK_ROBOT_SECRET"]
    env["YINGJI_DINGTALK_ROBOT_SECRET_FILE"] = str(path)
    ding = build_channels(config_for(), env, client=client, only={"dingtalk"})["dingtalk"]
    assert isinstance(await ding.send(outgoing("zs01")), Accepted)
    env["YINGJI_DINGTALK_ROBOT_SECRET_FILE"] = str(tmp_path / "absent")
    with pytest.raises(MissingSecret, match="channel dingtalk: YINGJI_DINGTALK_ROBOT_SECRET_FILE cannot be read"):
        build_channels(config_for(), env, client=client)


async def test_logs_name_the_send_never_the_address_or_the_text(sinks, client):
    channels = build_channels(config_for(smtp_port=sinks.smtp_port), env_for(sinks), client=client)
    with capture_logs() as logs:
        for channel_id, address in [("email", "zhang@example.cn"), ("wecom", "zhangsan"), ("dingtalk", "zs01"), ("sms", "13800138000")]:
            await channels[channel_id].send(outgoing(address))
        await build_channels(config_for(), env_for(sinks, YINGJI_SMS_WEBHOOK_SECRET="x"), client=client, only={"sms"})["sms"].send(outgoing("13800138000"))
    assert [(e["channel"], e["outcome"]) for e in logs] == [
        ("email", "accepted"), ("wecom", "accepted"), ("dingtalk", "accepted"), ("sms", "accepted"), ("sms", "failed")]
    text = repr(logs)
    for private in ("zhang@example.cn", "zhangsan", "zs01", "13800138000", "梨园镇", "燃气泄漏"):
        assert private not in text
    assert all(e["dedup_key"] == "inc-1:route.gas:unit.ry" for e in logs)
