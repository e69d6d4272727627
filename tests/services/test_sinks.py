"""The local sinks `make run` starts (issue 19 item 7), sent to by the real channel adapters with the
environment sinks_env gives: a mail lands in the Maildir with its Message-ID, robot posts land in the
journal, a wrong 钉钉 signature is refused, the 21st message in a minute is answered 45009 (on an
injected clock: nothing sleeps a minute). And `yingji sinks` as its own process, as `yingji run`
starts it."""

from __future__ import annotations

import email
import email.policy
import json
import smtplib
import stat
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage

import httpx
import pytest

from playbooks.delivery.channels import ChannelsFile, RobotChannel, load_channels
from services.clock import SimulatedClock
from services.delivery.channels import Accepted, Failed, Outgoing, build_channels
from services.local.kafka import free_port
from services.local.sinks import ROBOT_LIMIT, Sinks, local_channels, secret_path, sinks_env
from services.local.stack import LocalStack
from services.settings import Settings

ADDRESSES = {"email": "zhang@example.cn", "wecom": "zhangsan", "dingtalk": "zs01", "sms": "13800138000"}


def outgoing(address: str, **over) -> Outgoing:
    base = dict(dedup_key="inc-7:route.gas:unit.ry", person_id="p-zhang", address=address,
                subject="燃气泄漏 一级响应 请立即报告", text="**梨园镇** 燃气泄漏，请 10 分钟内电话报告。", mobile="13800138000")
    return Outgoing(**{**base, **over})


def unlimited(config: ChannelsFile) -> ChannelsFile:
    """The robots' local limiter lifted, so the 21st message reaches the robot and the robot answers."""
    channels = [c.model_copy(update={"rate": c.rate.model_copy(update={"value": c.rate.value.model_copy(
        update={"messages": 1000})})}) if isinstance(c, RobotChannel) else c for c in config.channels]
    return config.model_copy(update={"channels": channels})


@pytest.fixture
def clock():
    return SimulatedClock(datetime.now(timezone.utc))


@pytest.fixture
def sinks(tmp_path, clock):
    with Sinks.on_free_ports(tmp_path / "data", clock=clock) as started:
        yield started


@pytest.fixture
async def client():
    async with httpx.AsyncClient(timeout=5) as c:
        yield c


def channels_for(sinks: Sinks, client: httpx.AsyncClient, *, clock=None, config: ChannelsFile | None = None, **env):
    settings = sinks.settings
    return build_channels(local_channels(config or load_channels(), settings), {**sinks_env(settings), **env},
                          client=client, clock=clock)


def journal(sinks: Sinks, robot: str) -> list[dict]:
    path = sinks.settings.data_dir / "sinks" / f"{robot}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


async def test_a_mail_lands_in_the_maildir_with_its_message_id(sinks, client):
    channel = channels_for(sinks, client)["email"]
    first = await channel.send(outgoing(ADDRESSES["email"]))
    again = await channel.send(outgoing(ADDRESSES["email"], resend=True))
    assert isinstance(first, Accepted) and isinstance(again, Accepted)
    files = sorted((sinks.settings.data_dir / "mail" / "new").iterdir(), key=lambda p: p.stat().st_mtime_ns)
    assert len(files) == 2
    kept = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files]
    # the resend carries the first one's Message-ID: the receiving side recognises it by that
    assert {m["Message-ID"] for m in kept} == {first.provider_id} == {again.provider_id}
    assert sorted(m["Subject"] for m in kept) == ["【重发】燃气泄漏 一级响应 请立即报告", "燃气泄漏 一级响应 请立即报告"]
    assert all(m["Delivered-To"] == ADDRESSES["email"] and m["Return-Path"] == "<yingji@localhost>" for m in kept)
    assert "梨园镇" in kept[0].get_content()


async def test_robot_posts_land_in_the_journal_and_on_messages(sinks, client, clock):
    channels = channels_for(sinks, client, clock=clock)
    for robot in ("wecom", "dingtalk", "sms"):
        assert isinstance(await channels[robot].send(outgoing(ADDRESSES[robot])), Accepted), robot
    wecom, dingtalk, sms = journal(sinks, "wecom"), journal(sinks, "dingtalk"), journal(sinks, "sms")
    assert len(wecom) == len(dingtalk) == len(sms) == 1
    assert wecom[0]["body"]["text"]["mentioned_list"] == ["zhangsan"]
    assert dingtalk[0]["body"]["at"]["atMobiles"] == ["13800138000"]
    assert sms[0]["body"]["to"] == "13800138000" and sms[0]["headers"]["idempotency-key"] == sms[0]["body"]["id"]
    assert abs(datetime.fromisoformat(wecom[0]["received_at"]) - clock.now()) < timedelta(seconds=5)
    async with httpx.AsyncClient(base_url=sinks.http_url) as http:
        listed = (await http.get("/messages", params={"robot": "wecom"})).json()
        assert listed == wecom
        assert (await http.get("/messages", params={"robot": "telegram"})).status_code == 400


async def test_dingtalk_with_a_wrong_secret_or_a_stale_timestamp_is_refused(sinks, client, clock):
    wrong = channels_for(sinks, client, clock=clock, YINGJI_DINGTALK_ROBOT_SECRET="SECnot-the-local-one")["dingtalk"]
    refused = await wrong.send(outgoing(ADDRESSES["dingtalk"]))
    assert isinstance(refused, Failed) and not refused.retryable and "310000" in refused.reason
    assert "sign not match" in refused.reason
    late = SimulatedClock(clock.now() - timedelta(hours=1, minutes=1))  # signed with the right secret, an hour ago
    stale = await channels_for(sinks, client, clock=late)["dingtalk"].send(outgoing(ADDRESSES["dingtalk"]))
    assert isinstance(stale, Failed) and "310000" in stale.reason and "timestamp" in stale.reason
    assert journal(sinks, "dingtalk") == [] and sinks.robots.received("dingtalk") == []
    good = await channels_for(sinks, client, clock=clock)["dingtalk"].send(outgoing(ADDRESSES["dingtalk"]))
    assert isinstance(good, Accepted)


async def test_the_sms_gateway_refuses_a_wrong_signature(sinks, client):
    sms = channels_for(sinks, client, YINGJI_SMS_WEBHOOK_SECRET="guess")["sms"]
    result = await sms.send(outgoing(ADDRESSES["sms"]))
    assert isinstance(result, Failed) and "401" in result.reason
    assert journal(sinks, "sms") == []


@pytest.mark.parametrize("robot", ["wecom", "dingtalk"])
async def test_the_21st_message_in_a_minute_is_answered_45009(sinks, client, clock, robot):
    channel = channels_for(sinks, client, clock=clock, config=unlimited(load_channels()))[robot]
    for i in range(ROBOT_LIMIT):
        assert isinstance(await channel.send(outgoing(ADDRESSES[robot], dedup_key=f"n-{i}")), Accepted), i
        clock.advance(timedelta(seconds=2))  # 20 messages over 40 s
    refused = await channel.send(outgoing(ADDRESSES[robot], dedup_key="n-20"))
    assert isinstance(refused, Failed) and refused.retryable and "45009" in refused.reason
    assert len(journal(sinks, robot)) == ROBOT_LIMIT
    clock.advance(timedelta(seconds=20))  # 60 s after the first: it leaves the window, one place frees
    assert isinstance(await channel.send(outgoing(ADDRESSES[robot], dedup_key="n-21")), Accepted)
    again = await channel.send(outgoing(ADDRESSES[robot], dedup_key="n-22"))
    assert isinstance(again, Failed) and "45009" in again.reason


def test_the_local_secrets_are_made_once_and_kept_private(tmp_path):
    settings = Settings(data_dir=tmp_path, sinks_smtp_port=free_port(), sinks_http_port=free_port())
    with Sinks(settings):
        pass
    path = secret_path(tmp_path, "dingtalk")
    first = path.read_text()
    assert first.startswith("SEC") and stat.S_IMODE(path.stat().st_mode) == 0o600
    with Sinks(settings):  # a restart keeps the robot's secret: channels built before still sign right
        pass
    assert path.read_text() == first
    assert sinks_env(settings)["YINGJI_DINGTALK_ROBOT_SECRET_FILE"] == str(path)


def test_a_real_mail_server_in_channels_yaml_is_left_alone(tmp_path):
    settings = Settings(data_dir=tmp_path, sinks_smtp_port=18025)
    raw = load_channels().model_dump()
    for channel in raw["channels"]:
        if channel["kind"] == "email":
            channel["smtp"].update(host="smtp.example.cn", port=465, security="ssl")
    real = ChannelsFile.model_validate(raw)
    assert local_channels(real, settings).channel("email").smtp.port == 465
    assert local_channels(load_channels(), settings).channel("email").smtp.port == 18025


def test_the_stack_points_the_channels_at_the_sinks_unless_the_user_set_a_robot(tmp_path, monkeypatch):
    monkeypatch.delenv("YINGJI_WECOM_ROBOT_URL", raising=False)
    monkeypatch.delenv("YINGJI_WECOM_ROBOT_URL_FILE", raising=False)
    settings = Settings(data_dir=tmp_path, sinks_http_port=18026)
    env = LocalStack(settings).env
    assert env["YINGJI_WECOM_ROBOT_URL"] == "http://127.0.0.1:18026/cgi-bin/webhook/send?key=local"
    assert env["YINGJI_SMS_WEBHOOK_SECRET_FILE"] == str(secret_path(tmp_path, "sms"))
    assert "YINGJI_WECOM_ROBOT_URL" not in LocalStack(Settings(data_dir=tmp_path, local_sinks=False)).env
    monkeypatch.setenv("YINGJI_WECOM_ROBOT_URL", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=real")
    env = LocalStack(settings).env
    assert env["YINGJI_WECOM_ROBOT_URL"].endswith("key=real") and "YINGJI_DINGTALK_ROBOT_URL" not in env


def test_yingji_sinks_runs_as_its_own_process(tmp_path):
    """As `yingji run` starts it: LocalStack.start_sinks returns once both ports answer."""
    settings = Settings(data_dir=tmp_path / "data", sinks_smtp_port=free_port(), sinks_http_port=free_port(),
                        log_json=True)
    stack = LocalStack(settings, log_dir=tmp_path / "logs")
    try:
        stack.start_sinks()
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = "yingji@localhost", ADDRESSES["email"], "试发"
        mail["Message-ID"] = "<try-1@yingji>"
        mail.set_content("梨园镇 燃气泄漏")
        with smtplib.SMTP("127.0.0.1", settings.sinks_smtp_port, timeout=10) as smtp:
            smtp.send_message(mail)
        [kept] = (settings.data_dir / "mail" / "new").iterdir()
        assert email.message_from_bytes(kept.read_bytes(), policy=email.policy.default)["Message-ID"] == "<try-1@yingji>"
        assert httpx.get(f"http://127.0.0.1:{settings.sinks_http_port}/messages?robot=wecom").json() == []
    finally:
        stack.stop()
    assert stack.sinks is not None and stack.sinks.returncode == 0  # SIGTERM: a clean stop
    text = stack.log_path("sinks").read_text(encoding="utf-8")
    assert "sinks started" in text and "sinks stopped" in text
    for private in (ADDRESSES["email"], "梨园镇"):
        assert private not in text
