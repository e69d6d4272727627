"""Reports as documents (issue 23 item 2): the 书面报告 and 详细信息报告 drafted from what the service
knows of an incident, item by item as 4.1.5 lists them, and a filed text checked for those items.

4.1.5: 报告内容一般包括时间、地点、信息来源、事件性质、危害程度、发展趋势、已采取的措施等，并根据事态
发展和处置情况及时续报. Pure: the incident's records and `now` in, a draft out; the shell renders it as
.docx or plain text. An item the records cannot fill is left 【待补充】 and named as missing; a filed
report missing an item is marked so on its timeline, never refused (a late complete report is worse
than an on-time incomplete one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from topics.models import Decision, EventKind, IncidentEvent, ReportFacts, ReportKind

BEIJING = ZoneInfo("Asia/Shanghai")
TO_FILL = "【待补充】"
NUMERALS = "一二三四五六七八九十"
# 4.1.5's items in its order: (stable id, the plan's word). `progress` is the 续报's 处置进展.
ITEMS: tuple[tuple[str, str], ...] = (
    ("time", "时间"), ("place", "地点"), ("source", "信息来源"), ("nature", "事件性质"),
    ("harm", "危害程度"), ("trend", "发展趋势"), ("measures", "已采取的措施"), ("progress", "后续进展"),
)
LABELS = dict(ITEMS)
DOCUMENT_KINDS = {ReportKind.WRITTEN_REPORT: "书面报告", ReportKind.DETAILED_REPORT: "详细信息报告"}
HARM = (("deaths", "死亡", "人"), ("missing", "失踪", "人"), ("serious_injuries", "重伤", "人"),
        ("injuries", "受伤", "人"), ("poisoned", "中毒", "人"), ("evacuated", "疏散转移", "人"),
        ("direct_loss_yuan", "直接经济损失", "元"), ("interruption_hours", "中断", "小时"), ("magnitude", "震级", "级"))


@dataclass(frozen=True)
class Item:
    id: str
    label: str
    text: str

    @property
    def missing(self) -> bool:
        return self.text == TO_FILL


@dataclass(frozen=True)
class ReportDraft:
    kind: ReportKind
    incident_id: str
    title: str
    unit: str  # 报送单位: the lead unit, which owes it
    drafted_at: datetime
    items: tuple[Item, ...]

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(i.id for i in self.items if i.missing)

    def as_text(self) -> str:
        """The body as an officer edits it in the filing form: one numbered line per item."""
        head = [self.title, f"报送单位：{self.unit}", "签发人：", f"报送时间：{local(self.drafted_at)}", ""]
        return "\n".join(head + [f"{NUMERALS[n]}、{i.label}：{i.text}" for n, i in enumerate(self.items)]) + "\n"


def local(t: datetime) -> str:
    return t.astimezone(BEIJING).strftime("%Y年%m月%d日 %H:%M")


def draft(kind: ReportKind, report: ReportFacts, decision: Decision, events: Iterable[IncidentEvent],
          now: datetime) -> ReportDraft:
    """A 书面报告 or 详细信息报告 of one incident as its records tell it at `now`."""
    if kind not in DOCUMENT_KINDS:
        raise ValueError(f"kind: a document is drafted for {', '.join(k.value for k in DOCUMENT_KINDS)}, not {kind.value}")
    events = sorted(events, key=lambda e: e.seq)
    loc = report.location
    place = "、".join(filter(None, [loc.street, loc.address, *(f"重点地区：{a}" for a in loc.key_area)]))
    f = report.facts
    harm = [f"{word}{_number(getattr(f, name))}{unit}" for name, word, unit in HARM if getattr(f, name)]
    trend = _trend(report, decision)
    measures = [f"启动{decision.response_level.value}响应，由{'、'.join(decision.lead_units)}牵头处置"]
    if decision.commanders:
        measures.append("指挥：" + "；".join(f"{c.role}{c.who}" for c in decision.commanders))
    told = sorted({n.unit for n in decision.notify})
    if told:
        measures.append("已通知：" + "、".join(told))
    progress = [f"{local(e.at)} {e.reason}" for e in events
                if e.kind in (EventKind.REGRADED, EventKind.LEVEL_ADJUSTED, EventKind.REPORT_FILED, EventKind.APPROVED)]
    nature = f"{decision.category_name}·{decision.type_name}，{decision.grade.value}"
    if decision.grade.value == "未判明":
        nature += "（暂时无法判明事件等级，待区应急办研判定级）"
    items = (
        Item("time", LABELS["time"], f"{local(report.occurred_at)}发生，{local(report.received_at)}接报"),
        Item("place", LABELS["place"], place or TO_FILL),
        Item("source", LABELS["source"], report.source or TO_FILL),
        Item("nature", LABELS["nature"], nature),
        Item("harm", LABELS["harm"], "，".join(harm) if harm else "暂无人员伤亡和财产损失报告"),
        Item("trend", LABELS["trend"], trend or TO_FILL),
        Item("measures", LABELS["measures"], "；".join(measures)),
        Item("progress", LABELS["progress"], "；".join(progress) if progress else "首报，暂无续报"),
    )
    title = f"关于{loc.street or ''}{decision.type_name}的{DOCUMENT_KINDS[kind]}"
    return ReportDraft(kind=kind, incident_id=decision.incident_id, title=title, unit=decision.lead_units[0],
                       drafted_at=now, items=items)


def _number(value: float | int | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _trend(report: ReportFacts, decision: Decision) -> str:
    """What the records say of where it is going; nothing said is left for the officer (not guessed)."""
    flags = report.flags
    said = []
    if flags.may_escalate:
        said.append("有进一步扩大、升级的可能")
    if flags.multi_agency:
        said.append("需多部门协同处置")
    if flags.sensitive:
        said.append("事件敏感，需关注舆情")
    if flags.major_event:
        said.append("发生在重大活动期间")
    return "；".join(said)


_ITEM_LINE = re.compile(r"^\s*[一二三四五六七八九十]+、\s*(?P<label>[^：:]+)[：:](?P<text>.*)$")


def missing_items(text: str) -> tuple[str, ...]:
    """The 4.1.5 items a filed text lacks: an item line absent, empty or still 【待补充】. The text is
    read as the draft writes it (一、时间：…); an item may run over several lines."""
    found: dict[str, str] = {}
    current: str | None = None
    by_label = {label: item_id for item_id, label in ITEMS}
    for line in text.splitlines():
        m = _ITEM_LINE.match(line)
        if m and m.group("label").strip() in by_label:
            current = by_label[m.group("label").strip()]
            found[current] = m.group("text").strip()
        elif current is not None and line.strip():
            found[current] = (found[current] + line.strip()).strip()
    return tuple(item_id for item_id, _ in ITEMS
                 if item_id != "progress" and (not found.get(item_id) or TO_FILL in found[item_id]))
