"""CAP 1.2 (issue 20 item 4): the messages the service writes validate against the OASIS XSD carried
in the repository and the rules the XSD cannot express, and incoming CAP is read safely.

One row per rule; a hypothesis property over every valid CapMessage; malformed input refused with
the element named."""

from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from lxml import etree
from pydantic import ValidationError

from playbooks.plan import load_plan
from playbooks.warning.cap import (
    CAP_CATEGORIES,
    CAP_NS,
    RESERVED_PARAMETERS,
    XSD_FILE,
    XSD_SHA256,
    CapError,
    CapMessage,
    Level,
    identifier_for,
    parse,
    to_xml,
    validate,
)

STREETS = sorted(load_plan().streets)
# 300 examples a property; `make test` runs 100 (YINGJI_PROPERTY_EXAMPLES), `make properties` the full 300
SETTINGS = settings(max_examples=int(os.environ.get("YINGJI_PROPERTY_EXAMPLES", "300")), deadline=None)
UTC = timezone.utc
SENT = datetime(2026, 7, 1, 8, 0, 0, 250_000, tzinfo=UTC)  # 16:00:00.25 in Beijing
EARLIER = ("yjb@bjtzh.gov.cn", "11011200000000_20260701150000_0", datetime(2026, 7, 1, 7, 0, tzinfo=UTC))
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00$")
NS = {"c": CAP_NS}


def message(**over: Any) -> CapMessage:
    base: dict[str, Any] = {
        "identifier": identifier_for(SENT),
        "sender": "yjb@bjtzh.gov.cn",
        "sent": SENT,
        "level": "橙",
        "category": "Met",
        "event": "暴雨",
        "description": "预计未来6小时内降雨量将达50毫米以上",
        "instruction": "停止户外作业，远离河道",
        "sender_name": "通州区应急管理局",
        "expires": SENT + timedelta(hours=12),
        "areas": ["梨园镇", "永顺镇"],
    }
    return CapMessage.model_validate({**base, **over})


def xpath(xml: bytes, path: str) -> list[str]:
    return [str(v) for v in etree.fromstring(xml).xpath(path, namespaces=NS)]


def test_the_xsd_is_the_oasis_file_unmodified():
    assert hashlib.sha256(XSD_FILE.read_bytes()).hexdigest() == XSD_SHA256
    assert XSD_SHA256 == "b7798ef25868b068c97b268bda02d067c7d4ba9373adc5638bf37105804ee723"
    assert "Copyright OASIS Open 2010" in XSD_FILE.read_text(encoding="utf-8")
    assert XSD_SHA256 in (XSD_FILE.parent / "NOTICE.md").read_text(encoding="utf-8")


# --- what to_xml writes, one row per rule ------------------------------------------------------

LEVEL_ROWS = [  # level, severity, native label, headline word
    ("红", "Extreme", "一级（红色）", "红色"),
    ("橙", "Severe", "二级（橙色）", "橙色"),
    ("黄", "Moderate", "三级（黄色）", "黄色"),
    ("蓝", "Minor", "四级（蓝色）", "蓝色"),
]


@pytest.mark.parametrize(("level", "severity", "label", "word"), LEVEL_ROWS, ids=[r[0] for r in LEVEL_ROWS])
def test_severity_follows_the_colour_and_the_native_level_is_kept(level, severity, label, word):
    xml = to_xml(message(level=level))
    assert xpath(xml, "//c:severity/text()") == [severity]
    assert xpath(xml, "//c:parameter[c:valueName='预警级别']/c:value/text()") == [label]
    assert word in xpath(xml, "//c:headline/text()")[0]
    assert validate(xml) == []


@pytest.mark.parametrize("spelling", ["橙", "橙色", "二级", "二级（橙色）", "Orange", Level.ORANGE])
def test_a_level_may_be_given_by_colour_or_rank(spelling):
    assert message(level=spelling).level is Level.ORANGE


def _at(rule: str, xml: bytes) -> None:
    """The checks of RULE_ROWS on a document to_xml wrote."""
    checks = {
        "times": lambda: all(TIME.match(t) for t in xpath(xml, "//c:sent/text()|//c:expires/text()|//c:onset/text()|//c:effective/text()")),
        "sent in Beijing, whole seconds": lambda: xpath(xml, "/c:alert/c:sent/text()") == ["2026-07-01T16:00:00+08:00"],
        "references triplets": lambda: xpath(xml, "//c:references/text()") == ["yjb@bjtzh.gov.cn,11011200000000_20260701150000_0,2026-07-01T15:00:00+08:00"],
        "status Exercise": lambda: xpath(xml, "//c:status/text()") == ["Exercise"],
        "status Draft": lambda: xpath(xml, "//c:status/text()") == ["Draft"],
        "geocode 110112": lambda: xpath(xml, "//c:area/c:geocode/c:value/text()") == ["110112"]
        and xpath(xml, "//c:area/c:geocode/c:valueName/text()") == ["GB/T 2260"],
        "areaDesc the streets": lambda: xpath(xml, "//c:areaDesc/text()") == ["梨园镇、永顺镇"],
        "zh-CN, Public": lambda: xpath(xml, "//c:language/text()") == ["zh-CN"] and xpath(xml, "//c:scope/text()") == ["Public"],
        "a warning: Expected, Likely, Prepare": lambda: xpath(xml, "//c:urgency/text()|//c:certainty/text()|//c:responseType/text()")
        == ["Prepare", "Expected", "Likely"],
        "a lifting: Past, Observed, AllClear": lambda: xpath(xml, "//c:urgency/text()|//c:certainty/text()|//c:responseType/text()")
        == ["AllClear", "Past", "Observed"],
        "escaped": lambda: b"a&lt;b &amp; c" in xml,
    }
    assert checks[rule](), f"{rule}: {xml.decode()}"


RULE_ROWS = [  # rule, the message's fields over the defaults
    ("times", {"onset": datetime(2026, 7, 1, 20, 30, 15, 999_999, tzinfo=timezone(timedelta(hours=-5))),
               "effective": SENT}),
    ("sent in Beijing, whole seconds", {}),
    ("references triplets", {"msg_type": "Update", "references": [EARLIER]}),
    ("references triplets", {"msg_type": "Cancel", "references": [EARLIER]}),
    ("status Exercise", {"status": "Exercise"}),
    ("status Draft", {"status": "Draft"}),
    ("geocode 110112", {}),
    ("areaDesc the streets", {}),
    ("zh-CN, Public", {}),
    ("a warning: Expected, Likely, Prepare", {"msg_type": "Update", "references": [EARLIER]}),
    ("a lifting: Past, Observed, AllClear", {"msg_type": "Cancel", "references": [EARLIER]}),
    ("escaped", {"description": "a<b & c"}),
]


@pytest.mark.parametrize(("rule", "over"), RULE_ROWS, ids=[f"{r[0]}-{i}" for i, r in enumerate(RULE_ROWS)])
def test_to_xml_keeps_the_rule(rule, over):
    xml = to_xml(message(**over))
    assert validate(xml) == []
    _at(rule, xml)
    assert parse(xml) == message(**over)


REFUSED_ROWS = [  # rule, fields, the field the error names
    ("an Update names earlier messages", {"msg_type": "Update"}, "references"),
    ("a Cancel names earlier messages", {"msg_type": "Cancel", "references": []}, "references"),
    ("identifier: no space", {"identifier": "a b"}, "identifier"),
    ("identifier: no comma", {"identifier": "a,b"}, "identifier"),
    ("identifier: no <", {"identifier": "a<b"}, "identifier"),
    ("identifier: no &", {"identifier": "a&b"}, "identifier"),
    ("sender: no space", {"sender": "区 应急办"}, "sender"),
    ("sender: no comma", {"sender": "a,b"}, "sender"),
    ("a reference's identifier: no comma", {"msg_type": "Update", "references": [("s", "a,b", SENT)]}, "references"),
    ("expires after sent", {"expires": SENT}, "expires"),
    ("expires after sent", {"expires": SENT - timedelta(hours=1)}, "expires"),
    ("an aware sent", {"sent": datetime(2026, 7, 1, 16, 0)}, "sent"),
    ("status Actual, Exercise or Draft", {"status": "Test"}, "status"),
    ("a CAP category", {"category": "Weather"}, "category"),
    ("at least one area", {"areas": []}, "areas"),
    ("an area named once", {"areas": ["梨园镇", "梨园镇"]}, "areas"),
    ("the headline names the level", {"headline": "暴雨预警"}, "headline"),
    ("the level parameters are written, not given", {"parameters": {"预警级别": "一级"}}, "parameters"),
    ("text XML can carry", {"description": "a\x00b"}, "description"),
    ("a level", {"level": "紫"}, "level"),
]


@pytest.mark.parametrize(("rule", "over", "field"), REFUSED_ROWS, ids=[r[0] + f"-{i}" for i, r in enumerate(REFUSED_ROWS)])
def test_a_message_breaking_a_rule_cannot_be_built(rule, over, field):
    with pytest.raises(ValidationError) as caught:
        message(**over)
    text = str(caught.value)
    assert field in text or (field == "references" and "references" in text), text


# --- validate on documents: the rules the XSD cannot express ------------------------------------

GOOD = to_xml(message(msg_type="Update", references=[EARLIER]))
REFERENCE = b"yjb@bjtzh.gov.cn,11011200000000_20260701150000_0,2026-07-01T15:00:00+08:00"

DOCUMENT_ROWS = [  # rule, (old, new) in the good document, the element the problem names
    ("references present for an Update", (b"<references>" + REFERENCE + b"</references>", b""), "references"),
    ("references are sender,identifier,sent", (b"2026-07-01T15:00:00+08:00</references>", b"</references>"), "references"),
    ("a reference's sent is a time", (b",2026-07-01T15:00:00+08:00</references>", b",yesterday</references>"), "references"),
    ("identifier without space", (b"<identifier>110112", b"<identifier>110 112"), "identifier"),
    ("sender without comma", (b"<sender>yjb@", b"<sender>yjb,"), "sender"),
    ("sender without &", (b"<sender>yjb@", b"<sender>yjb&amp;"), "sender"),
    ("identifier without <", (b"<identifier>110112", b"<identifier>&lt;110112"), "identifier"),
    ("expires after sent", (b"<expires>2026-07-02T04:00:00", b"<expires>2026-07-01T12:00:00"), "expires"),
    ("no Z time", (b"<sent>2026-07-01T16:00:00+08:00", b"<sent>2026-07-01T08:00:00Z"), "sent"),
    ("no fractions of seconds", (b"<sent>2026-07-01T16:00:00+08:00", b"<sent>2026-07-01T16:00:00.5+08:00"), "sent"),
    ("an explicit offset", (b"<expires>2026-07-02T04:00:00+08:00", b"<expires>2026-07-02T04:00:00"), "expires"),
    ("no comma for the sign", (b"<expires>2026-07-02T04:00:00+08:00", b"<expires>2026-07-02T04:00:00,08:00"), "expires"),
    ("the XSD: status", (b"<status>Actual", b"<status>Real"), "status"),
    ("the XSD: the order of the elements", (b"<scope>Public</scope>", b""), "scope"),
]


@pytest.mark.parametrize(("rule", "edit", "element"), DOCUMENT_ROWS, ids=[r[0] for r in DOCUMENT_ROWS])
def test_validate_names_the_broken_rule(rule, edit, element):
    assert validate(GOOD) == []
    old, new = edit
    assert old in GOOD
    problems = validate(GOOD.replace(old, new, 1))
    assert problems, rule
    assert any(element in p.split(":", 1)[0] or element in p for p in problems), problems
    with pytest.raises(CapError):
        parse(GOOD.replace(old, new, 1))


def test_validate_lists_every_problem_at_once():
    bad = GOOD.replace(b"<sender>yjb@", b"<sender>yjb,").replace(b"<references>" + REFERENCE + b"</references>", b"")
    fields = {p.split(":", 1)[0] for p in validate(bad)}
    assert {"sender", "references"} <= fields


# --- malformed input refused --------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol9;</identifier></alert>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE alert [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&secret;</identifier></alert>"""

NO_INFO = re.sub(rb"<info>.*</info>", b"", to_xml(message()), flags=re.S)
Z_TIME = to_xml(message()).replace(b"<sent>2026-07-01T16:00:00+08:00", b"<sent>2026-07-01T08:00:00Z")
UPDATE_WITHOUT_REFERENCES = to_xml(message()).replace(b"<msgType>Alert", b"<msgType>Update")
WRONG_NAMESPACE = to_xml(message()).replace(CAP_NS.encode(), b"urn:oasis:names:tc:emergency:cap:1.1")
TEST_STATUS = to_xml(message()).replace(b"<status>Actual", b"<status>Test")

MALFORMED_ROWS = [  # what, the bytes, the field the error names
    ("not XML", b"this is not XML", "document"),
    ("truncated", to_xml(message())[:-20], "document"),
    ("text, not bytes", to_xml(message()).decode(), "document"),
    ("a billion-laughs entity bomb", BILLION_LAUGHS, "document"),
    ("an external entity (XXE)", XXE, "document"),
    ("a missing <info>", NO_INFO, "info"),
    ("a Z time", Z_TIME, "sent"),
    ("an Update without references", UPDATE_WITHOUT_REFERENCES, "references"),
    ("CAP 1.1's namespace", WRONG_NAMESPACE, "alert"),
    ("status Test (not a warning)", TEST_STATUS, "status"),
]


@pytest.mark.parametrize(("what", "xml", "field"), MALFORMED_ROWS, ids=[r[0] for r in MALFORMED_ROWS])
def test_malformed_input_is_refused_naming_the_field(what, xml, field):
    with pytest.raises(CapError) as caught:
        parse(xml)
    assert isinstance(caught.value, ValueError)
    assert caught.value.field == field, (caught.value.field, caught.value.problems)
    assert field in str(caught.value)
    if field != "status":  # status Test is valid CAP, only no warning
        assert validate(xml)


def test_incoming_cap_without_our_parameters_takes_the_level_from_severity():
    """The weather bureau's CAP need not carry 预警级别: severity gives the colour; a bilingual
    message is read in Chinese."""
    xml = to_xml(message(level="黄", headline="北京市通州区气象台发布暴雨黄色预警信号"))
    root = etree.fromstring(xml)
    info = root.find(f"{{{CAP_NS}}}info")
    for p in info.findall(f"{{{CAP_NS}}}parameter"):
        info.remove(p)
    english = etree.fromstring(etree.tostring(info))
    english.find(f"{{{CAP_NS}}}language").text = "en-US"
    english.find(f"{{{CAP_NS}}}headline").text = "Yellow rainstorm warning"
    root.insert(list(root).index(info), english)
    got = parse(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    assert got.level is Level.YELLOW and got.headline.endswith("黄色预警信号")


def test_a_level_parameter_contradicting_severity_is_refused():
    xml = to_xml(message(level="红")).replace(b"<severity>Extreme", b"<severity>Minor")
    assert validate(xml) == []  # valid CAP
    with pytest.raises(CapError) as caught:
        parse(xml)
    assert caught.value.field == "severity"


# --- identifiers --------------------------------------------------------------------------------


def test_identifier_for_follows_gb_t_35965_1():
    assert identifier_for(SENT) == "11011200000000_20260701160000_0"
    assert identifier_for(SENT, 3, unit="41600000") == "11011241600000_20260701160000_3"
    assert re.fullmatch(r"110112\d{8}_\d{14}_\d", identifier_for(SENT.astimezone(timezone(timedelta(hours=-9))), 9))


@pytest.mark.parametrize("bad", [{"n": 10}, {"n": -1}, {"unit": "416"}, {"area": "1101"}])
def test_identifier_for_refuses_codes_of_the_wrong_shape(bad):
    with pytest.raises(ValueError):
        identifier_for(SENT, **bad)


# --- the property: every valid message validates and round-trips ---------------------------------

OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
TIMES = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59),
                     timezones=st.one_of(OFFSETS, st.timezones()))
# mostly Chinese, with the characters XML must escape, the whitespace it must keep, and any other
# character it can carry (control characters are refused by the model: a row above)
CHARS = st.one_of(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
                  st.sampled_from("<>&\"' \n\r\t，。、；（）0123456789abcXYZ"),
                  st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")))
TEXT = st.text(CHARS, max_size=40)
NAMES = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789_-.:@/"), min_size=1, max_size=30)


@st.composite
def messages(draw: st.DrawFn) -> CapMessage:
    level = draw(st.sampled_from(list(Level)))
    sent = draw(TIMES)
    msg_type = draw(st.sampled_from(["Alert", "Update", "Cancel"]))
    references = draw(st.lists(st.tuples(NAMES, NAMES, TIMES), min_size=msg_type != "Alert", max_size=4))
    headline = draw(st.one_of(st.just(""), st.builds(lambda a, b, w: f"{a}{w}{b}", TEXT, TEXT,
                                                   st.sampled_from([f"{level.value}色", level.rank]))))
    fields = {
        "identifier": draw(st.one_of(NAMES, st.builds(identifier_for, TIMES, st.integers(0, 9)))),
        "sender": draw(NAMES),
        "sent": sent,
        "status": draw(st.sampled_from(["Actual", "Exercise", "Draft"])),
        "msg_type": msg_type,
        "references": references,
        "level": level,
        "category": draw(st.sampled_from(CAP_CATEGORIES)),
        "event": draw(st.text(CHARS, min_size=1, max_size=10)),
        "headline": headline,
        "description": draw(TEXT),
        "instruction": draw(TEXT),
        "sender_name": draw(TEXT),
        "effective": draw(st.none() | TIMES),
        "onset": draw(st.none() | TIMES),
        "expires": draw(st.none() | st.integers(1, 30 * 86400).map(lambda s: sent + timedelta(seconds=s))),
        "areas": draw(st.lists(st.sampled_from(STREETS), min_size=1, max_size=22, unique=True)),
        "parameters": draw(st.dictionaries(st.text(CHARS, min_size=1, max_size=8).filter(lambda k: k not in RESERVED_PARAMETERS),
                                           TEXT, max_size=3)),
    }
    try:
        return CapMessage.model_validate(fields)
    except ValidationError:
        assume(False)  # a draw the model refuses (a character XML cannot carry) is no valid message
        raise


def test_the_streets_are_the_plans_22():
    assert len(STREETS) == 22


@SETTINGS
@given(messages())
def test_every_valid_message_validates_and_round_trips(m):
    xml = to_xml(m)
    assert validate(xml) == []
    assert parse(xml) == m
    assert xpath(xml, "//c:area/c:geocode/c:value/text()") == ["110112"]
    assert all(TIME.match(t) for t in xpath(xml, "//c:sent/text()|//c:expires/text()|//c:onset/text()|//c:effective/text()"))
