"""playbooks/data/channels.yaml: which channels a notice takes, one row per route, and a channel
skipped when the person lacks its contact."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from playbooks.delivery.channels import CHANNELS_FILE, NOTICE_KINDS, choose_channels, channels_for, load_channels
from topics.duty import Contacts

EVERYTHING = Contacts(mobile="13800138000", email="zhang@example.cn", chat_ids={"wecom": "zhangsan", "dingtalk": "zs01"})


@pytest.fixture(scope="module")
def config():
    return load_channels()


# (kind, level, contacts, expected channels, rule): one row per route and per skip
ROWS = [
    ("routing", "一级", EVERYTHING, ["wecom", "dingtalk", "sms", "email"], "level_1_2_every_channel", []),
    ("routing", "二级", EVERYTHING, ["wecom", "dingtalk", "sms", "email"], "level_1_2_every_channel", []),
    ("routing", "三级", EVERYTHING, ["wecom", "dingtalk", "email"], "level_3_chat_and_email", ["sms"]),
    ("routing", None, EVERYTHING, ["wecom", "dingtalk", "email"], "level_3_chat_and_email", ["sms"]),
    ("reminder", "一级", EVERYTHING, ["wecom", "dingtalk", "email"], "reminder_chat_and_email", ["sms"]),
    ("escalation", "三级", EVERYTHING, ["wecom", "dingtalk", "sms", "email"], "escalation_every_channel", []),
    ("escalation", None, EVERYTHING, ["wecom", "dingtalk", "sms", "email"], "escalation_every_channel", []),
    ("handover", None, EVERYTHING, ["wecom", "dingtalk", "email"], "handover_chat_and_email", ["sms"]),
    ("rectification", None, EVERYTHING, ["wecom", "dingtalk", "email"], "rectification_chat_and_email", ["sms"]),
    ("approved_report", "二级", EVERYTHING, ["email", "wecom", "dingtalk"], "report_and_end_email_and_chat", ["sms"]),
    ("end", None, EVERYTHING, ["email", "wecom", "dingtalk"], "report_and_end_email_and_chat", ["sms"]),
    # skips: a channel needs its contact
    ("routing", "一级", Contacts(mobile="13800138000"), ["sms"], "level_1_2_every_channel", []),
    ("routing", "一级", Contacts(email="a@b.cn", chat_ids={"dingtalk": "zs01"}), ["dingtalk", "email"], "level_1_2_every_channel", []),
    # none of the route's channels: the first in failover order the person has (failover, issue 19 item 2)
    ("routing", "三级", Contacts(mobile="13800138000"), ["sms"], "level_3_chat_and_email", []),
    ("reminder", None, Contacts(chat_ids={"wecom": "zhangsan", "other": "x"}), ["wecom"], "reminder_chat_and_email", []),
    ("routing", "三级", Contacts(), [], "level_3_chat_and_email", []),
]


@pytest.mark.parametrize(("kind", "level", "contacts", "expected", "rule", "spare"), ROWS,
                         ids=[f"{r[4]}-{r[0]}-{r[1]}-{'+'.join(r[3]) or 'none'}" for r in ROWS])
def test_route(config, kind, level, contacts, expected, rule, spare):
    choice = choose_channels(kind, level, contacts, config)
    assert choice.rule == rule
    assert choice.channels == expected
    assert channels_for(kind, level, contacts, config) == expected
    assert choice.spare == spare
    assert set(choice.addresses) == set(expected) | set(spare)
    skipped = [r for r in choice.reasons if "skipped" in r]
    route = config.route_for(kind, level).channels
    assert len(skipped) == len([c for c in route if c not in choice.addresses])
    if not expected:
        assert choice.reasons[-1].startswith("no channel")


def test_addresses_are_the_contacts_each_channel_needs(config):
    choice = choose_channels("routing", "一级", EVERYTHING, config)
    assert choice.addresses == {"wecom": "zhangsan", "dingtalk": "zs01", "sms": "13800138000", "email": "zhang@example.cn"}
    assert "skipped" not in " ".join(choice.reasons)


def test_every_kind_and_level_has_a_route(config):
    for kind in NOTICE_KINDS:
        for level in ("一级", "二级", "三级", None):
            assert config.route_for(kind, level)


@pytest.mark.parametrize(("kind", "level", "field"), [("page", "一级", "notice_kind"), ("routing", "四级", "level")])
def test_unknown_kind_or_level_names_the_argument(config, kind, level, field):
    with pytest.raises(ValueError, match=field):
        channels_for(kind, level, EVERYTHING, config)


def test_every_figure_without_a_source_is_our_choice(config):
    raw = yaml.safe_load(CHANNELS_FILE.read_text(encoding="utf-8"))
    for route in raw["routes"]:
        assert route["source"] and "our_choice" in route
    for channel in raw["channels"]:
        for key in ("msgtype", "rate", "retryable_errcodes", "max_bytes"):
            if channel.get(key):
                assert channel[key]["source"] and isinstance(channel[key]["our_choice"], bool), (channel["id"], key)
    robots = [c for c in config.channels if c.kind.endswith("_robot")]
    assert {c.rate.value.messages for c in robots} == {20} and {c.rate.value.seconds for c in robots} == {60}


def _broken(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(CHANNELS_FILE.read_text(encoding="utf-8"))
    mutate(raw)
    path = tmp_path / "channels.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def _channel(raw, channel_id):
    return next(c for c in raw["channels"] if c["id"] == channel_id)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda raw: raw["routes"][0]["channels"].append("pager"), "routes\\[0\\].channels: 'pager'"),
    (lambda raw: raw["routes"][1].update(levels=["特级"]), "routes\\[1\\].levels"),
    (lambda raw: raw["routes"][2].update(kinds=["nag"]), "routes\\[2\\].kinds"),
    (lambda raw: raw["routes"].pop(), "no route for kind 'approved_report'"),
    (lambda raw: _channel(raw, "dingtalk").pop("secret_env"), "secret_env"),
    (lambda raw: _channel(raw, "wecom").update(url_env="wecom url"), "url_env"),
    (lambda raw: _channel(raw, "email")["smtp"].update(security="tls"), "security"),
    (lambda raw: _channel(raw, "wecom").update(token="abc"), "token"),
], ids=["unknown-channel", "unknown-level", "unknown-kind", "kind-without-route", "dingtalk-unsigned",
        "env-name", "smtp-security", "secret-inline"])
def test_a_broken_file_fails_at_load_naming_the_field(tmp_path, mutate, message):
    with pytest.raises(ValueError, match=message):
        load_channels(_broken(tmp_path, mutate))
