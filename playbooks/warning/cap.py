"""Warnings as OASIS CAP 1.2 messages (issue 20 item 4), written, validated and read. Pure.

- `CapMessage`: what one warning message says (an issue is an Alert, an adjustment an Update, a
  lifting a Cancel). A message that could not be valid CAP cannot be built.
- `to_xml`: the CAP 1.2 document: language zh-CN, every time `YYYY-MM-DDThh:mm:ss+08:00`,
  severity from the colour, the native level in the headline and in the parameters 预警级别 and
  warningLevel, the streets as areaDesc with the district's GB/T 2260 geocode 110112.
- `validate`: the problems of a document, none when valid: the OASIS XSD carried in schema/ plus
  the rules it cannot express (as Google's CAP validator and the IPAWS profile check them).
- `parse`: incoming CAP (the weather bureau issues its own warnings, plan 3.2.3(5)): parsed with
  defusedxml first (no DTD, so no entity bomb or external entity), then the same validation;
  anything wrong raises `CapError` naming the element.
- `identifier_for`: GB/T 35965.1-2018 identifiers.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from lxml import etree
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
XSD_FILE = Path(__file__).resolve().parent / "schema" / "CAP-v1.2.xsd"
XSD_SHA256 = "b7798ef25868b068c97b268bda02d067c7d4ba9373adc5638bf37105804ee723"

# China has kept +08:00 without summer time since 1991; a fixed offset (not the Asia/Shanghai zone,
# which had +09:00 summers in 1986-1991) writes every time as the Chinese profile shows it.
BEIJING = timezone(timedelta(hours=8), "CST")
AREA_CODE = "110112"  # 通州区 in GB/T 2260
GEOCODE_NAME = "GB/T 2260"
# The unit part of a GB/T 35965.1 identifier: DDD (the GB/T 4657 organ code) + UUU (the unit's own
# sub-code, 000 by default) + XX (extension, 00 by default). The plan names no GB/T 4657 code for
# 区应急办 and none is invented: 000 stands for "the district's own office" until the office gives
# its code; other issuers pass theirs (the weather service's identifiers use 416).
DISTRICT_UNIT = "00000000"
AREA_SEPARATOR = "、"  # how a Chinese notice lists streets; areaDesc is read back by splitting on it
LEVEL_PARAMETER = "预警级别"
LEVEL_PARAMETER_EN = "warningLevel"
RESERVED_PARAMETERS = frozenset({LEVEL_PARAMETER, LEVEL_PARAMETER_EN})

CAP_CATEGORIES = ("Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport",
                  "Infra", "CBRNE", "Other")
# whole seconds and an explicit numeric offset; the XSD's own pattern also lets a comma through
# in place of the sign ([-,+]), which no reader expects
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
FORBIDDEN_IN_ID = re.compile(r"[\s,<&]")
# characters XML 1.0 cannot carry at all (most C0 controls, surrogates, U+FFFE/FFFF)
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class Level(StrEnum):
    """The plan's four levels (3.2.2): 一级 红 is the highest."""

    RED = "红"
    ORANGE = "橙"
    YELLOW = "黄"
    BLUE = "蓝"

    @property
    def rank(self) -> str:
        return _RANK[self]

    @property
    def label(self) -> str:
        """How a notice writes it, e.g. 二级（橙色）."""
        return f"{self.rank}（{self.value}色）"

    @property
    def severity(self) -> str:
        return _SEVERITY[self]

    @property
    def english(self) -> str:
        return _ENGLISH[self]

    @classmethod
    def of(cls, text: str) -> Level:
        """The level a text names: 橙, 橙色, 二级, 二级（橙色）, 橙色预警, Orange ... naming exactly one."""
        text = str(text).strip()
        found = {lv for lv in cls if lv.value in text} or {lv for lv in cls if lv.rank in text}
        found = found or {lv for lv in cls if lv.english.lower() == text.lower()}
        if len(found) != 1:
            raise ValueError(f"{text!r} names no level (红/橙/黄/蓝, 一级..四级, Red/Orange/Yellow/Blue)")
        return found.pop()


_RANK = {Level.RED: "一级", Level.ORANGE: "二级", Level.YELLOW: "三级", Level.BLUE: "四级"}
# as the national weather service and WMO's cap-composer map the colours
_SEVERITY = {Level.RED: "Extreme", Level.ORANGE: "Severe", Level.YELLOW: "Moderate", Level.BLUE: "Minor"}
_ENGLISH = {Level.RED: "Red", Level.ORANGE: "Orange", Level.YELLOW: "Yellow", Level.BLUE: "Blue"}
_LEVEL_OF_SEVERITY = {v: k for k, v in _SEVERITY.items()}


class CapError(ValueError):
    """A CAP document refused; `field` names the element (or `document`), `problems` lists them all."""

    def __init__(self, field: str, problems: list[str]):
        self.field = field
        self.problems = problems
        super().__init__("; ".join(problems))


def _xml_text(value: str) -> str:
    bad = NOT_XML.search(value)
    if bad:
        raise ValueError(f"holds {bad.group()!r}, which XML cannot carry")
    return value


def _no_forbidden(value: str) -> str:
    bad = FORBIDDEN_IN_ID.search(value)
    if bad:
        raise ValueError(f"may not hold {bad.group()!r} (spaces, commas, < and & break references)")
    return _xml_text(value)


def _beijing(value: datetime) -> datetime:
    # CAP carries whole seconds; normalising here keeps parse(to_xml(m)) == m
    try:
        return value.astimezone(BEIJING).replace(microsecond=0)
    except OverflowError as exc:  # an aware time at the very edge of the calendar
        raise ValueError(f"{value} has no +08:00 form") from exc


Text = Annotated[str, AfterValidator(_xml_text)]
Name = Annotated[str, Field(min_length=1), AfterValidator(_no_forbidden)]
Time = Annotated[AwareDatetime, AfterValidator(_beijing)]


class Reference(NamedTuple):
    """An earlier message an Update or Cancel refers to; written `sender,identifier,sent`."""

    sender: Name
    identifier: Name
    sent: Time


class CapMessage(BaseModel):
    """One warning message. Built only valid: to_xml of any CapMessage passes validate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    identifier: Name
    sender: Name
    sent: Time
    # Actual live, Exercise in a drill, Draft while awaiting approval (never disseminated)
    status: Literal["Actual", "Exercise", "Draft"] = "Actual"
    msg_type: Literal["Alert", "Update", "Cancel"] = "Alert"
    references: tuple[Reference, ...] = ()
    level: Annotated[Level, BeforeValidator(lambda v: v if isinstance(v, Level) else Level.of(v))]
    category: Literal[CAP_CATEGORIES] = "Other"  # type: ignore[valid-type]
    event: Annotated[Text, Field(min_length=1)]
    headline: Text = ""  # empty: "<sender_name>发布<event><colour>色预警"
    description: Text = ""
    instruction: Text = ""
    sender_name: Text = ""
    effective: Time | None = None
    onset: Time | None = None
    expires: Time | None = None
    areas: tuple[Annotated[Text, Field(min_length=1)], ...] = Field(min_length=1)
    parameters: dict[Annotated[Text, Field(min_length=1)], Text] = Field(default_factory=dict)

    @field_validator("areas")
    @classmethod
    def _areas(cls, areas: tuple[str, ...]) -> tuple[str, ...]:
        for area in areas:
            if AREA_SEPARATOR in area or area != area.strip():
                raise ValueError(f"{area!r}: an area name holds no {AREA_SEPARATOR} and no outer spaces")
        if len(set(areas)) != len(areas):
            raise ValueError("an area is named twice")
        return areas

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, parameters: dict[str, str]) -> dict[str, str]:
        taken = RESERVED_PARAMETERS & parameters.keys()
        if taken:
            raise ValueError(f"{', '.join(sorted(taken))} is written from the level, not given")
        return parameters

    @model_validator(mode="after")
    def _rules(self) -> CapMessage:
        if self.msg_type in ("Update", "Cancel") and not self.references:
            raise ValueError(f"an {self.msg_type} names the earlier messages it refers to (references)")
        if self.expires is not None and self.expires <= self.sent:
            raise ValueError("expires must come after sent")
        if not self.headline:
            # frozen: the default headline is set once, here, before anyone sees the message
            object.__setattr__(self, "headline", f"{self.sender_name}发布{self.event}{self.level.value}色预警")
        elif f"{self.level.value}色" not in self.headline and self.level.rank not in self.headline:
            raise ValueError(f"the headline names the level ({self.level.value}色 or {self.level.rank})")
        return self


# --- writing -----------------------------------------------------------------------------------


def format_time(value: datetime) -> str:
    return _beijing(value).isoformat(timespec="seconds")


def identifier_for(sent: datetime, n: int = 0, *, unit: str = DISTRICT_UNIT, area: str = AREA_CODE) -> str:
    """GB/T 35965.1-2018: `<area code><unit code>_<YYYYMMDDhhmmss>_<n>`, the time in Beijing time
    and n the serial (0-9) of the unit's messages within that second."""
    if not re.fullmatch(r"\d{6}", area):
        raise ValueError(f"area code {area!r}: six digits (GB/T 2260)")
    if not re.fullmatch(r"\d{8}", unit):
        raise ValueError(f"unit code {unit!r}: eight digits (GB/T 4657 organ code, sub-unit, extension)")
    if not 0 <= n <= 9:
        raise ValueError(f"serial {n}: one digit, 0-9")
    return f"{area}{unit}_{_beijing(sent):%Y%m%d%H%M%S}_{n}"


def _sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        element.text = text
    return element


def _pair(parent: etree._Element, tag: str, name: str, value: str) -> None:
    pair = _sub(parent, tag)
    _sub(pair, "valueName", name)
    _sub(pair, "value", value)


def to_xml(msg: CapMessage) -> bytes:
    """The message as a CAP 1.2 document (UTF-8, elements in the XSD's order)."""
    alert = etree.Element(f"{{{CAP_NS}}}alert", nsmap={None: CAP_NS})
    _sub(alert, "identifier", msg.identifier)
    _sub(alert, "sender", msg.sender)
    _sub(alert, "sent", format_time(msg.sent))
    _sub(alert, "status", msg.status)
    _sub(alert, "msgType", msg.msg_type)
    _sub(alert, "scope", "Public")  # warnings are for the public (plan 3.2.8)
    if msg.status == "Exercise":
        _sub(alert, "note", "演练（Exercise）")  # CAP: the note says what an Exercise is
    if msg.references:
        _sub(alert, "references", " ".join(f"{r.sender},{r.identifier},{format_time(r.sent)}" for r in msg.references))
    info = _sub(alert, "info")
    _sub(info, "language", "zh-CN")
    _sub(info, "category", msg.category)
    _sub(info, "event", msg.event)
    if msg.msg_type == "Cancel":
        # a lifting says the danger has passed (3.2.7): CAP's Past ("no longer required"), AllClear
        _sub(info, "responseType", "AllClear")
        urgency, certainty = "Past", "Observed"
    else:
        # a warning is readiness before the event (3.2.5): Prepare; Expected (act within the hour
        # or so) and Likely (p > ~50%) are what a forecast-based warning claims, as weather
        # services send them; Immediate/Observed would say the event is already under way
        _sub(info, "responseType", "Prepare")
        urgency, certainty = "Expected", "Likely"
    _sub(info, "urgency", urgency)
    _sub(info, "severity", msg.level.severity)
    _sub(info, "certainty", certainty)
    for tag, value in (("effective", msg.effective), ("onset", msg.onset), ("expires", msg.expires)):
        if value is not None:
            _sub(info, tag, format_time(value))
    for tag, text in (("senderName", msg.sender_name), ("headline", msg.headline),
                      ("description", msg.description), ("instruction", msg.instruction)):
        if text:
            _sub(info, tag, text)
    _pair(info, "parameter", LEVEL_PARAMETER, msg.level.label)
    _pair(info, "parameter", LEVEL_PARAMETER_EN, msg.level.english)
    for name, value in msg.parameters.items():
        _pair(info, "parameter", name, value)
    area = _sub(info, "area")
    _sub(area, "areaDesc", AREA_SEPARATOR.join(msg.areas))
    # street codes (GB/T 10114, nine digits) are not in the plan's data: the district's code stands
    _pair(area, "geocode", GEOCODE_NAME, AREA_CODE)
    return etree.tostring(alert, xml_declaration=True, encoding="UTF-8")


# --- validating --------------------------------------------------------------------------------


@functools.cache
def schema() -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(XSD_FILE), parser))


def _tree(xml: bytes) -> etree._Element:
    """The document's root, read safely: defusedxml refuses any DTD (entity bombs, external
    entities) before lxml, which the XSD needs, reads the same bytes with entities off."""
    if not isinstance(xml, bytes | bytearray):
        raise CapError("document", ["document: CAP arrives as bytes (its encoding is in the declaration)"])
    try:
        SafeET.fromstring(bytes(xml), forbid_dtd=True)
    except DefusedXmlException as exc:
        raise CapError("document", [f"document: refused, it declares a DTD or entities ({type(exc).__name__})"]) from exc
    except SafeET.ParseError as exc:
        raise CapError("document", [f"document: not well-formed XML ({exc})"]) from exc
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        return etree.fromstring(bytes(xml), parser)
    except etree.XMLSyntaxError as exc:
        raise CapError("document", [f"document: not well-formed XML ({exc})"]) from exc


def _schema_problems(root: etree._Element) -> list[str]:
    xsd = schema()
    if xsd.validate(root):
        return []
    out = []
    for error in xsd.error_log:
        message = re.sub(r"\{[^}]*\}", "", error.message) if CAP_NS in error.message else error.message
        element = re.search(r"Element '([^']+)'", message)
        out.append(f"{element.group(1) if element else 'document'}: line {error.line}: {message}")
    return out


def _c(tag: str) -> str:
    return f"{{{CAP_NS}}}{tag}"


def _time_problem(name: str, text: str | None) -> str | None:
    if text is None or not TIME_RE.match(text.strip()):
        return f"{name}: {text!r} is not YYYY-MM-DDThh:mm:ss+hh:mm (whole seconds, an explicit offset, no Z)"
    try:
        datetime.fromisoformat(text.strip())
    except ValueError:
        return f"{name}: {text!r} is no date"
    return None


def _rule_problems(root: etree._Element) -> list[str]:
    """The rules the XSD cannot express."""
    out: list[str] = []
    for tag in ("identifier", "sender"):
        text = root.findtext(_c(tag))
        if text is not None and (not text or FORBIDDEN_IN_ID.search(text)):
            out.append(f"{tag}: {text!r} is empty or holds a space, comma, < or &")
    sent_text = root.findtext(_c("sent"))
    problem = _time_problem("sent", sent_text)
    if problem:
        out.append(problem)
    msg_type = root.findtext(_c("msgType"))
    references = (root.findtext(_c("references")) or "").split()
    if msg_type in ("Update", "Cancel") and not references:
        out.append(f"references: an {msg_type} names the earlier messages it refers to")
    for triplet in references:
        parts = triplet.split(",")
        if len(parts) != 3 or not parts[0] or not parts[1] or _time_problem("", parts[2]):
            out.append(f"references: {triplet!r} is not sender,identifier,sent")
    infos = root.findall(_c("info"))
    if not infos:
        out.append("info: a warning carries at least one <info>")
    sent = None if problem or sent_text is None else datetime.fromisoformat(sent_text.strip())
    for i, info in enumerate(infos, 1):
        for tag in ("effective", "onset", "expires"):
            text = info.findtext(_c(tag))
            if text is not None:
                bad = _time_problem(f"info[{i}]/{tag}", text)
                if bad:
                    out.append(bad)
                elif tag == "expires" and sent is not None and datetime.fromisoformat(text.strip()) <= sent:
                    out.append(f"info[{i}]/expires: {text} is not after sent {sent_text}")
    return out


def validate(xml: bytes) -> list[str]:
    """Every problem of a CAP 1.2 document, each starting with its element; empty when valid."""
    try:
        root = _tree(xml)
    except CapError as exc:
        return exc.problems
    if root.tag != _c("alert"):
        # another version's namespace or no CAP at all: its elements cannot be read as CAP 1.2
        return [f"alert: the root is {root.tag!r}, not <alert> in {CAP_NS}"]
    problems = _schema_problems(root)
    # the rules are checked even when the schema fails, so one pass lists everything
    return problems + _rule_problems(root)


# --- reading -----------------------------------------------------------------------------------

_XML_NAME = {"msg_type": "msgType", "sender_name": "senderName"}


def _text(parent: etree._Element, tag: str) -> str | None:
    element = parent.find(_c(tag))
    return None if element is None else (element.text or "")


def _pairs(parent: etree._Element, tag: str) -> dict[str, str]:
    return {(p.findtext(_c("valueName")) or ""): (p.findtext(_c("value")) or "") for p in parent.findall(_c(tag))}


def _info(root: etree._Element) -> etree._Element:
    infos = root.findall(_c("info"))
    # a bilingual message carries one info per language: the Chinese one is the warning read here
    return next((i for i in infos if (_text(i, "language") or "").lower().startswith("zh")), infos[0])


def _level(info: etree._Element, parameters: Mapping[str, str]) -> Level:
    severity = _text(info, "severity")
    named = parameters.get(LEVEL_PARAMETER) or parameters.get(LEVEL_PARAMETER_EN)
    if named is None:
        if severity not in _LEVEL_OF_SEVERITY:
            raise CapError("severity", [f"severity: {severity!r} gives no level and no {LEVEL_PARAMETER} parameter names one"])
        return _LEVEL_OF_SEVERITY[severity]
    try:
        level = Level.of(named)
    except ValueError as exc:
        raise CapError("parameter", [f"parameter {LEVEL_PARAMETER}: {exc}"]) from exc
    if severity != level.severity:
        raise CapError("severity", [f"severity: {severity!r} contradicts {LEVEL_PARAMETER} {named!r} ({level.severity})"])
    return level


def parse(xml: bytes) -> CapMessage:
    """An incoming CAP 1.2 warning as a CapMessage; CapError (a ValueError) names what is wrong."""
    problems = validate(xml)
    if problems:
        raise CapError(problems[0].split(":", 1)[0], problems)
    root = _tree(xml)
    info = _info(root)
    parameters = _pairs(info, "parameter")
    level = _level(info, parameters)
    references = []
    for triplet in (_text(root, "references") or "").split():
        sender, identifier, sent = triplet.split(",")
        references.append((sender, identifier, datetime.fromisoformat(sent)))
    areas = [name for a in info.findall(_c("area")) for name in (_text(a, "areaDesc") or "").split(AREA_SEPARATOR)]
    fields: dict[str, Any] = {
        "identifier": _text(root, "identifier"),
        "sender": _text(root, "sender"),
        "sent": datetime.fromisoformat((_text(root, "sent") or "").strip()),
        "status": _text(root, "status"),
        "msg_type": _text(root, "msgType"),
        "references": references,
        "level": level,
        "category": _text(info, "category"),  # the first: the model keeps one category
        "event": _text(info, "event"),
        "headline": _text(info, "headline") or "",
        "description": _text(info, "description") or "",
        "instruction": _text(info, "instruction") or "",
        "sender_name": _text(info, "senderName") or "",
        "areas": areas,
        "parameters": {k: v for k, v in parameters.items() if k not in RESERVED_PARAMETERS},
    }
    for tag in ("effective", "onset", "expires"):
        text = _text(info, tag)
        fields[tag] = None if text is None else datetime.fromisoformat(text.strip())
    try:
        return CapMessage.model_validate(fields)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = _XML_NAME.get(str(error["loc"][0]), str(error["loc"][0])) if error["loc"] else "alert"
            problems.append(f"{where}: {error['msg']}")
        first = exc.errors()[0]["loc"]
        raise CapError(_XML_NAME.get(str(first[0]), str(first[0])) if first else "alert", problems) from exc
