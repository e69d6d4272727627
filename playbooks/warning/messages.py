"""A warning's steps as CAP 1.2 messages (issue 20 item 4), pure: the draft is a Draft (never
disseminated), the issue an Alert, an adjustment after issue an Update and the lifting a Cancel, each
Update and Cancel referencing every message disseminated before it (`sender,identifier,sent`). A
drill's messages are Exercise. Approvals change no message: the draft stands until the issue."""

from __future__ import annotations

from playbooks.warning.cap import CapMessage, Level, Reference, identifier_for
from playbooks.warning.config import PlanUnits as Plan
from playbooks.warning.rules import WarningsFile
from topics.warnings import WarningEvent, WarningEventKind, WarningStatus

SENDER = "yingji.tongzhou.emergency"  # no space, comma, < or &: the CAP rules the XSD cannot check
MESSAGE_KINDS = {WarningEventKind.DRAFTED, WarningEventKind.ISSUED, WarningEventKind.ADJUSTED, WarningEventKind.LIFTED}


def _identifier(event: WarningEvent) -> str:
    return identifier_for(event.at, event.seq % 10)


def _disseminated(event: WarningEvent) -> bool:
    return event.kind in (WarningEventKind.ISSUED, WarningEventKind.LIFTED) or (
        event.kind is WarningEventKind.ADJUSTED and event.status is not WarningStatus.DRAFT)


def messages(history: list[WarningEvent], config: WarningsFile, plan: Plan) -> list[tuple[WarningEvent, CapMessage]]:
    """Every message of the warning, in order, each beside the step it is of."""
    out: list[tuple[WarningEvent, CapMessage]] = []
    sent_before: list[Reference] = []
    for event in sorted(history, key=lambda e: e.seq):
        if event.kind not in MESSAGE_KINDS:
            continue
        c = event.content
        level = config.level(event.level)
        category = config.category(c.category or "")
        issuer = plan.unit_name(c.issuer) if c.issuer and (c.issuer in plan.units) else (c.issuer or "区应急办")
        if event.drill:
            status = "Exercise"
        elif _disseminated(event):
            status = "Actual"
        else:
            status = "Draft"
        msg_type = {WarningEventKind.LIFTED: "Cancel"}.get(event.kind, "Update" if sent_before and _disseminated(event) else "Alert")
        measures = {m.id: m.name for m in (*config.base_measures, *config.extra_measures)}
        event_name = category.name if category else "突发事件"
        word = {WarningEventKind.LIFTED: "解除", WarningEventKind.ADJUSTED: "调整为"}.get(event.kind, "发布")
        msg = CapMessage(
            identifier=_identifier(event), sender=SENDER, sent=event.at, status=status, msg_type=msg_type,
            references=tuple(sent_before) if msg_type in ("Update", "Cancel") else (),
            level=Level.of(level.name), category=category.cap_category if category else "Other", event=event_name,
            headline=f"{issuer}{word}{event_name}{level.name}预警（{level.grade}）",
            description=c.hazards or event_name, instruction="；".join(measures.get(m, m) for m in c.measures),
            sender_name=issuer, effective=c.start or event.at, onset=c.start or event.at,
            areas=tuple(plan.units[s].name if s in plan.units else s for s in c.area) or ("通州区",),
            parameters={"warningId": event.warning_id, "step": str(event.seq)},
        )
        out.append((event, msg))
        if _disseminated(event) and status != "Draft":
            sent_before.append(Reference(SENDER, msg.identifier, msg.sent))
    return out


LEVEL_OF = {"红": "red", "橙": "orange", "黄": "yellow", "蓝": "blue"}


def content_of(msg: CapMessage, config: WarningsFile, plan: Plan, issuer: str) -> tuple[dict, list[str]]:
    """An incoming CAP warning as a draft's content (3.2.4), or the problems naming the CAP element."""
    problems: list[str] = []
    category = next((c for c in config.categories if c.name in msg.event), None)
    if category is None:
        problems.append(f"info.event: {msg.event!r} names none of the categories {[c.name for c in config.categories]}")
    by_name = {u.name: u.id for u in plan.units.values() if u.kind == "street"}
    if list(msg.areas) == ["通州区"]:
        area = list(by_name.values())
    else:
        area = []
        for name in msg.areas:
            if name in by_name:
                area.append(by_name[name])
            else:
                problems.append(f"info.area.areaDesc: {name!r} is not a street or township of 通州")
    base = [m.id for m in config.base_measures]
    level = LEVEL_OF[msg.level.value[0]] if msg.level.value[:1] in LEVEL_OF else None
    if level is None:
        problems.append(f"info.parameter: level {msg.level!r} unknown")
    if level in ("orange", "red"):  # 3.2.3(1): 区应急办 takes an 橙/红 one on to its approvals
        issuer = config.authority["orange_red"]["issuer"]
    content = {"category": category.id if category else None, "level": level, "start": msg.onset or msg.effective or msg.sent,
               "area": area, "hazards": msg.description or msg.headline, "measures": base, "issuer": issuer}
    return content, problems
