"""Warnings (预警, plan 3.2) as pure rules: a warning's state and one command in, the next state, the
events with their reasons, or the refusals (one line per problem, naming the field and the section).

    result = step(state_or_None, command, config, plan)

Issue 20 item 2. The rules, each with its section (warnings.yaml quotes the plan):
- 3.2.1/3.2.3(1): 蓝/黄 are issued and lifted by the category's special HQ or competent department and
  filed with 区应急办 (and 市应急办, 3.2.3(2)); 橙/红 are issued by 区应急办 after two recorded approvals
  (区领导, then 市应急办); a street or township never issues.
- 3.2.4: a warning missing any of its eight items is refused, one line per item.
- 3.2.5: measures are tasks: 蓝/黄 for the HQ, the department and the streets of the area; 橙/红 for
  every street and township too, with at least one of the eight further measures chosen.
- 3.2.6: 区应急办 changes the level with the 区应急委 leader's approval.
- 3.2.7: the issuer lifts at once, no approval; everyone told of the issue is told of the lift.
- 3.2.8: issue, adjustment and lifting are each published on every channel, a task per channel.
A warning never opens an incident or sets a response level (the plan has no such rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml

from playbooks.warning.cap import NOT_XML
from playbooks.warning.config import WARNINGS_FILE, WarningsFile
from topics.delivery import fit_id
from playbooks.warning.config import PlanUnits as Plan
from topics.warnings import (
    WarningCommand,
    WarningContent,
    WarningEvent,
    WarningEventKind,
    WarningLevel,
    WarningStatus,
    WarningTask,
)

def load_warnings(path: Path = WARNINGS_FILE, plan: Plan | None = None) -> WarningsFile:
    config = WarningsFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    if plan is not None and (missing := config.unknown_units(plan.units)):  # every unit named exists in the plan
        raise ValueError(f"{path.name}: units not in units.yaml: {missing}")
    return config


@dataclass
class WarningState:
    warning_id: str
    drill: bool
    status: WarningStatus
    content: WarningContent
    proposer: str  # the unit that drafted it
    approvals: dict[str, tuple[str, str, datetime]] = field(default_factory=dict)  # id -> (by, approver, at)
    told: list[str] = field(default_factory=list)
    seq: int = 0
    tasks: dict[str, WarningTask] = field(default_factory=dict)  # every task of every step, by id
    done: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # task id -> (by, when confirmed)


@dataclass
class Result:
    state: WarningState | None
    events: list[WarningEvent] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def content_problems(content: WarningContent, config: WarningsFile, plan: Plan, *, issuing: bool) -> list[str]:
    """3.2.4's eight items, each present; and what they name known. `issuing`: 发布时间 is set then."""
    problems = []
    present = {"category": content.category, "level": content.level, "start": content.start,
               "area": content.area, "hazards": content.hazards.strip(), "measures": content.measures,
               "issuer": content.issuer, "issued_at": content.issued_at if issuing else True}
    for f in config.content_fields:
        if not present[f.id]:
            problems.append(f"content.{f.id}: 缺少{f.name} (3.2.4)")
    if content.category and config.category(content.category) is None:
        problems.append(f"content.category: {content.category!r} is not a category of warnings.yaml "
                        f"{[c.id for c in config.categories]} (3.2.1)")
    streets = _streets(plan)
    for s in content.area:
        if s not in streets:
            problems.append(f"content.area: {s!r} is not a street or township of 通州 (3.2.4 可能影响范围)")
    known = {m.id for m in (*config.base_measures, *config.extra_measures)}
    for m in content.measures:
        if m not in known:
            problems.append(f"content.measures: {m!r} is not a measure of 3.2.5 {sorted(known)}")
    if content.issuer and content.issuer not in plan.units:
        problems.append(f"content.issuer: {content.issuer!r} is not a unit of the plan")
    bad = NOT_XML.search(content.hazards)
    if bad:  # the warning goes out as CAP (XML): a control character could not be published
        problems.append(f"content.hazards: holds {bad.group()!r}, a character a published warning cannot carry")
    return problems


def measure_problems(content: WarningContent, config: WarningsFile) -> list[str]:
    """3.2.5: every level takes the four base measures; 橙/红 at least one of the eight further ones."""
    problems = []
    chosen = set(content.measures)
    missing = [m.id for m in config.base_measures if m.id not in chosen]
    if content.measures and missing:
        problems.append(f"content.measures: the measures of 3.2.5(1) are taken at every level; missing {missing}")
    if content.level in config.high and not chosen & {m.id for m in config.extra_measures}:
        problems.append(f"content.measures: a {config.level(content.level).name} warning takes one or more of the "
                        f"measures of 3.2.5(2) {[m.id for m in config.extra_measures]}")
    return problems


def issuer_problems(unit_id: str, content: WarningContent, config: WarningsFile, plan: Plan, *, act: str) -> list[str]:
    """3.2.1/3.2.3(1): who may issue (or lift) the warning's level."""
    unit = plan.units.get(unit_id)
    if unit is None:
        return [f"unit: {unit_id!r} is not a unit of the plan"]
    if unit.kind in config.authority["never_issuers"]:
        return [f"unit: {unit.name} is a street or township: it manages warnings locally but does not {act} them "
                f"(3.2.1, 3.2.3(1))"]
    level = content.level
    if level is None:
        return []
    if level in config.high:
        issuer = config.authority["orange_red"]["issuer"]
        if unit_id != issuer:
            return [f"unit: a {config.level(level).name} warning is {act}d by 区应急办 (or a unit it authorises), "
                    f"not {unit.name} (3.2.3(1))"]
        return []
    cat = config.category(content.category or "")
    if unit.kind not in config.authority["blue_yellow"]["issuer_kinds"] and unit_id != config.adjustment["by"]:
        return [f"unit: a {config.level(level).name} warning is {act}d by a special HQ or a competent department, "
                f"not {unit.name} (3.2.3(1))"]
    if cat is not None and unit_id not in (cat.hq, cat.department, config.adjustment["by"]):
        return [f"unit: {unit.name} is not the HQ or department of {cat.name} warnings "
                f"({plan.units[cat.hq].name if cat.hq in plan.units else cat.hq} / "
                f"{plan.units[cat.department].name if cat.department in plan.units else cat.department}) (3.2.1, 3.2.3(1))"]
    return []


def _streets(plan: Plan) -> list[str]:
    return [u.id for u in plan.units.values() if u.kind == "street"]


def tasks_for(state: WarningState, config: WarningsFile, plan: Plan, kind: WarningEventKind) -> tuple[list[WarningTask], list[str]]:
    """The tasks and the units told of an issue, adjustment or lift (3.2.5, 3.2.8, 3.2.3 filing)."""
    c = state.content
    level = c.level
    assert level is not None
    cat = config.category(c.category or "")
    high = level in config.high
    streets = _streets(plan) if high else list(c.area)  # 3.2.5(2): every street from 橙
    units = [u for u in (cat.hq if cat else None, cat.department if cat else None) if u] + streets
    tasks: list[WarningTask] = []
    prefix = f"{state.warning_id}.{state.seq + 1}"
    if kind is not WarningEventKind.LIFTED:
        for u in units:
            for m in config.base_measures:
                tasks.append(WarningTask(id=fit_id(f"{prefix}.{u}.{m.id}"), unit_id=u, kind="measure", what=m.id, name=m.name,
                                         section="3.2.5(1)"))
            if high and u in streets:
                for m in config.extra_measures:
                    if m.id in c.measures:
                        tasks.append(WarningTask(id=fit_id(f"{prefix}.{u}.{m.id}"), unit_id=u, kind="measure", what=m.id,
                                                 name=m.name, section="3.2.5(2)"))
    for ch in config.channels:
        owners = list(c.area) if ch.unit == "street" else [ch.unit]
        for u in owners:
            tasks.append(WarningTask(id=fit_id(f"{prefix}.{u}.{ch.id}"), unit_id=u, kind="publication", what=ch.id, name=ch.name,
                                     section="3.2.8"))
    filing = config.authority["orange_red" if high else "blue_yellow"]["filed_with"]
    for u in filing:
        tasks.append(WarningTask(id=fit_id(f"{prefix}.{u}.filing"), unit_id=u, kind="filing", what="filing",
                                 name="备案" if not high else "报告", section="3.2.3(1)(2)"))
    told = list(dict.fromkeys([*units, *filing, *(t.unit_id for t in tasks)]))
    if kind is WarningEventKind.LIFTED:  # 3.2.7: everyone told of the issue
        told = list(dict.fromkeys([*state.told, *told]))
    return tasks, told


def _event(state: WarningState, cmd: WarningCommand, kind: WarningEventKind, reasons: list[str],
           tasks: list[WarningTask] | None = None, told: list[str] | None = None) -> WarningEvent:
    state.seq += 1
    assert state.content.level is not None
    approved = kind in (WarningEventKind.APPROVED, WarningEventKind.ADJUSTED)
    for t in tasks or []:
        state.tasks[t.id] = t
    if kind is WarningEventKind.TASK_DONE and cmd.task_id:
        state.done[cmd.task_id] = (cmd.by, cmd.at)
    return WarningEvent(id=f"{state.warning_id}.w{state.seq}", warning_id=state.warning_id, seq=state.seq, kind=kind,
                        at=cmd.at, by=cmd.by, level=state.content.level, status=state.status, content=state.content,
                        approvals=list(state.approvals), approval=cmd.approval if approved else None,
                        approver=cmd.approver if approved else None, proposer=state.proposer,
                        task_id=cmd.task_id if kind is WarningEventKind.TASK_DONE else None, tasks=tasks or [],
                        told=told or [], reasons=reasons, drill=state.drill)


def fold(events: list[WarningEvent]) -> WarningState | None:
    """A warning's state from its events, in seq order (each carries the state after it): what the API
    checks the next command against. Pure; an event read twice changes nothing."""
    state: WarningState | None = None
    for e in sorted({e.seq: e for e in events}.values(), key=lambda e: e.seq):
        if state is None:
            state = WarningState(warning_id=e.warning_id, drill=e.drill, status=e.status, content=e.content,
                                 proposer=e.proposer)
        state.status, state.content, state.seq = e.status, e.content, e.seq
        if e.approval:
            state.approvals[e.approval] = (e.by, e.approver or "", e.at)
        for t in e.tasks:
            state.tasks[t.id] = t
        if e.kind is WarningEventKind.TASK_DONE and e.task_id:
            state.done[e.task_id] = (e.by, e.at)
        if e.told:
            state.told = list(e.told)
    return state


def step(state: WarningState | None, cmd: WarningCommand, config: WarningsFile, plan: Plan) -> Result:
    """The warning after `cmd`, or the refusals. Pure: the command's own time is the time."""
    if cmd.kind == "draft":
        return _draft(state, cmd, config, plan)
    if state is None:
        return Result(None, refused=[f"warning_id: no warning {cmd.warning_id} (draft it first)"])
    if cmd.kind == "confirm":  # a lifting's own publications are confirmed after it
        return _confirm(state, cmd, config, plan)
    if state.status is WarningStatus.LIFTED:
        return Result(state, refused=[f"warning_id: {cmd.warning_id} was lifted (3.2.7)"])
    return {"approve": _approve, "issue": _issue, "adjust": _adjust, "lift": _lift}[cmd.kind](state, cmd, config, plan)


def _confirm(state: WarningState, cmd: WarningCommand, config: WarningsFile, plan: Plan) -> Result:
    """A task done, confirmed by the unit it fell to (3.2.5 measures, 3.2.8 publications, 3.2.3 filing)."""
    task = state.tasks.get(cmd.task_id or "")
    if task is None:
        return Result(state, refused=[f"task_id: {cmd.task_id!r} is no task of {state.warning_id}"])
    if cmd.unit != task.unit_id:
        return Result(state, refused=[f"unit: the task falls to {task.unit_id}, which confirms it, not {cmd.unit} ({task.section})"])
    if task.id in state.done:
        return Result(state, refused=[f"task_id: {task.id} was confirmed already"])
    reasons = [f"{plan.unit_name(task.unit_id) if task.unit_id in plan.units else task.unit_id} 确认：{task.name[:60]} ({task.section})"]
    return Result(state, [_event(state, cmd, WarningEventKind.TASK_DONE, reasons)])


def _draft(state: WarningState | None, cmd: WarningCommand, config: WarningsFile, plan: Plan) -> Result:
    if state is not None:
        return Result(state, refused=[f"warning_id: {cmd.warning_id} exists"])
    content = cmd.content or WarningContent()
    problems = content_problems(content, config, plan, issuing=False) + measure_problems(content, config)
    if content.level is not None and content.issuer:
        problems += issuer_problems(content.issuer, content, config, plan, act="issue")
    if content.level is not None and content.level not in config.high and cmd.unit != content.issuer:
        problems.append(f"unit: {cmd.unit} drafts a warning that {content.issuer} issues: the issuer drafts it (3.2.3(1))")
    if problems:
        return Result(None, refused=problems)
    new = WarningState(warning_id=cmd.warning_id, drill=cmd.drill, status=WarningStatus.DRAFT, content=content,
                       proposer=cmd.unit)
    lv = config.level(content.level)  # type: ignore[arg-type]
    needs = [a.name for a in config.approvals] if content.level in config.high else []
    why = f"{lv.grade}{lv.name}预警草案，{'待' + '、'.join(needs) if needs else '可由发布单位发布'} (3.2.3(1))"
    return Result(new, [_event(new, cmd, WarningEventKind.DRAFTED, [why])])


def _approve(state: WarningState, cmd: WarningCommand, config: WarningsFile, plan: Plan) -> Result:
    if state.status is not WarningStatus.DRAFT or state.content.level not in config.high:
        return Result(state, refused=["approval: only a drafted 橙/红 warning takes approvals (3.2.3(1))"])
    order = config.approvals
    step_id = cmd.approval
    ids = [a.id for a in order]
    if step_id not in ids:
        return Result(state, refused=[f"approval: {step_id!r} is not one of {ids} (3.2.3(1))"])
    if step_id in state.approvals:
        return Result(state, refused=[f"approval: {step_id} recorded already"])
    before = ids[: ids.index(step_id)]
    missing = [a for a in before if a not in state.approvals]
    if missing:
        return Result(state, refused=[f"approval: {step_id} follows {missing} (3.2.3(1): 区领导批准后，报市应急办批准)"])
    if not cmd.approver:
        return Result(state, refused=["approver: who approved is recorded (3.2.3(1))"])
    state.approvals[step_id] = (cmd.by, cmd.approver, cmd.at)
    a = next(x for x in order if x.id == step_id)
    return Result(state, [_event(state, cmd, WarningEventKind.APPROVED, [f"{a.name}：{cmd.approver} ({a.section})"])])


def _issue(state: WarningState, cmd: WarningCommand, config: WarningsFile, plan: Plan) -> Result:
    if state.status is not WarningStatus.DRAFT:
        return Result(state, refused=[f"status: {state.warning_id} is {state.status.value}, not a draft"])
    problems = issuer_problems(cmd.unit, state.content, config, plan, act="issue")
    if state.content.level in config.high:
        missing = [a.name for a in config.approvals if a.id not in state.approvals]
        if missing:
            problems.append(f"approvals: a {config.level(state.content.level).name} warning is issued after "
                            f"{'、'.join(missing)} (3.2.3(1))")
    if problems:
        return Result(state, refused=problems)
    state.content = state.content.model_copy(update={"issued_at": cmd.at, "issuer": cmd.unit})
    state.status = WarningStatus.ISSUED
    tasks, told = tasks_for(state, config, plan, WarningEventKind.ISSUED)
    state.told = told
    lv = config.level(state.content.level)  # type: ignore[arg-type]
    reasons = [f"{lv.grade}{lv.name}预警发布，发布单位 {plan.units[cmd.unit].name} (3.2.3(1))",
               f"措施 {len([t for t in tasks if t.kind == 'measure'])} 项 (3.2.5)，发布渠道 "
               f"{len([t for t in tasks if t.kind == 'publication'])} 项 (3.2.8)"]
    return Result(state, [_event(state, cmd, WarningEventKind.ISSUED, reasons, tasks, told)])


def _adjust(state: WarningState, cmd: WarningCommand, config: WarningsFile, plan: Plan) -> Result:
    by = config.adjustment["by"]
    approval = config.adjustment["approval"]
    problems = []
    if cmd.unit != by:
        problems.append(f"unit: 区应急办 adjusts a warning's level, not {cmd.unit} (3.2.6)")
    if cmd.approval != approval["id"] or not cmd.approver:
        problems.append(f"approval: an adjustment is approved by {approval['name']}: approval {approval['id']} "
                        f"and the approver are recorded (3.2.6)")
    new = cmd.content or WarningContent()
    if new.level is None:
        problems.append("content.level: the new 预警级别 (3.2.6)")
    if problems:
        return Result(state, refused=problems)
    merged = state.content.model_copy(update={
        "level": new.level, "measures": new.measures or state.content.measures,
        "area": new.area or state.content.area, "hazards": new.hazards or state.content.hazards})
    problems = measure_problems(merged, config)
    if problems:
        return Result(state, refused=problems)
    old = config.level(state.content.level)  # type: ignore[arg-type]
    state.content = merged
    state.approvals[approval["id"]] = (cmd.by, cmd.approver or "", cmd.at)
    reasons = [f"预警级别调整：{old.name}→{config.level(merged.level).name}，{approval['name']}：{cmd.approver} (3.2.6)"]  # type: ignore[arg-type]
    if state.status is WarningStatus.DRAFT:
        return Result(state, [_event(state, cmd, WarningEventKind.ADJUSTED, reasons)])
    tasks, told = tasks_for(state, config, plan, WarningEventKind.ADJUSTED)
    state.told = list(dict.fromkeys([*state.told, *told]))
    return Result(state, [_event(state, cmd, WarningEventKind.ADJUSTED, reasons, tasks, state.told)])


def _lift(state: WarningState, cmd: WarningCommand, config: WarningsFile, plan: Plan) -> Result:
    if state.status is not WarningStatus.ISSUED:
        return Result(state, refused=[f"status: only an issued warning is lifted; {state.warning_id} is {state.status.value}"])
    if cmd.unit not in (state.content.issuer, config.adjustment["by"]):
        return Result(state, refused=[f"unit: the issuer ({state.content.issuer}) lifts the warning, not {cmd.unit} (3.2.7)"])
    state.status = WarningStatus.LIFTED
    tasks, told = tasks_for(state, config, plan, WarningEventKind.LIFTED)
    state.told = told
    reasons = [f"预警解除：{cmd.reason or '危险已经解除'}；通报发布时告知的全部单位 (3.2.7)",
               config.lifting["choice"]]
    return Result(state, [_event(state, cmd, WarningEventKind.LIFTED, reasons, tasks, told)])
