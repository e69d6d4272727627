"""Writes busy-night.yaml: 24 overlapping incidents of mixed types over one six-hour night.

`python playbooks/drill/scenarios/busy_night.py` rewrites the YAML (checked in; a test keeps it current).
The expectations are NOT taken from the engine: grade and level are written by hand per row from
the plan (1.4.2 thresholds, 4.3.2–4.3.4, raise 4.3.1), and each obligation's status is worked out
here from the filing times against the duty rules' deadlines (phone 10 min and written 60 min after
receipt, detailed 120 min after the event) and obligations.yaml's 4.7.1, 研判定级 and 续报 figures, so the
engine is checked against an independent reading.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
DURATION = 360  # minutes: 22:00 to 04:00
DUE = {"phone_report": ("received", 10), "written_report": ("received", 60), "detailed_report": ("occurred", 120)}
FAST_CHAIN_STEP2 = 10  # obligations.yaml report_chain_fast: step 2 ten minutes after the due time


class Row(NamedTuple):
    key: str
    at: int  # minutes after 22:00: received
    before: int  # occurred this many minutes before receipt
    type: str
    street: str
    facts: dict
    flags: dict
    asserted: str | None  # the reporting unit's grade (asserted_by is the lead unit)
    grade: str  # expected, by hand from the plan
    level: str
    lead: list[str]
    filed: tuple  # minutes after receipt for phone, written, detailed; None = never filed
    key_area: tuple = ()
    notified: tuple = ()


ROWS = [
    Row("n01", 5, 10, "火灾事故", "中仓街道", {"injuries": 2}, {}, None, "一般", "二级", ["通州消防救援支队"], (6, 40, 90)),
    Row("n02", 12, 5, "道路交通事故", "马驹桥镇", {"deaths": 3, "injuries": 8}, {}, None, "较大", "一级",
        ["通州交通支队", "区城市管理委", "区水务局", "通州公路分局"], (5, 50, 100), notified=("区应急委", "市应急办", "市委宣传部")),
    Row("n03", 20, 5, "燃气事故", "玉桥街道", {"evacuated": 50}, {}, None, "一般", "三级", ["区城市管理委"], (None, 55, 110)),
    Row("n04", 30, 15, "供热事故", "北苑街道", {}, {}, None, "一般", "二级", ["区城市管理委"], (8, 58, 100),
        key_area=("城市副中心",), notified=("北京城市副中心",)),
    Row("n05", 41, 10, "电力突发事件", "潞城镇", {}, {}, "一般", "一般", "二级", ["区城市管理委"], (12, 70, 100),
        key_area=("行政办公区",), notified=("行政办公区",)),
    Row("n06", 55, 20, "刑事案件", "通运街道", {"injuries": 1}, {}, "一般", "一般", "二级", ["通州公安分局"], (4, 45, 95)),
    Row("n07", 63, 0, "上访、聚集等群体性事件", "新华街道", {}, {"sensitive": True}, None, "未判明", "二级",
        ["区委政法委"], (9, 59, 119)),
    Row("n08", 75, 5, "特种设备事故", "九棵树街道", {"injuries": 1}, {}, None, "一般", "二级", ["区市场监管局"], (7, 30, 90)),
    Row("n09", 82, 30, "轨道交通运营突发事件", "梨园镇", {"interruption_hours": 2.5}, {}, None, "一般", "三级", ["区交通局"],
        (6, 75, 85)),
    Row("n10", 90, 60, "群体性不明原因疾病", "台湖镇", {}, {}, "一般", "一般", "三级", ["区卫生健康委"], (10, 60, 55)),
    Row("n11", 98, 10, "突发环境事件", "西集镇", {"evacuated": 300}, {}, None, "较大", "一级", ["区生态环境局"], (8, 50, 105),
        notified=("区应急委", "市应急办")),
    Row("n12", 105, 0, "信息安全事件", "文景街道", {}, {}, None, "未判明", "三级", ["区委网信办"], (3, 20, 60)),
    Row("n13", 112, 10, "桥梁突发事件", "漷县镇", {}, {"multi_agency": True}, "一般", "一般", "二级", ["区城市管理委", "区水务局"],
        (9, 40, 100)),
    Row("n14", 120, 5, "地下管线突发事件", "杨庄街道", {}, {}, None, "未判明", "三级", ["区城市管理委"], (14, None, 100)),
    Row("n15", 130, 25, "建设工程施工突发事件", "张家湾镇", {"deaths": 1}, {}, None, "一般", "二级", ["区住房和城乡建设委"],
        (5, 45, 100)),
    Row("n16", 138, 45, "食品安全事件", "永顺镇", {"poisoned": 4}, {}, "一般", "一般", "二级", ["区市场监管局"], (8, 55, 70)),
    Row("n17", 145, 0, "影响校园安全稳定事件", "潞邑街道", {}, {"major_event": True}, None, "未判明", "二级", ["区教委"],
        (6, 50, 110)),
    Row("n18", 153, 5, "危险化学品事故", "于家务回族乡", {"poisoned": 2}, {}, None, "一般", "二级", ["区应急局"], (7, 52, 112)),
    Row("n19", 160, 10, "人防工程事故", "临河里街道", {}, {}, None, "一般", "三级", ["区人防办"], (6, 59, 100)),
    Row("n20", 168, 5, "公共汽车运营突发事件", "宋庄镇", {"injuries": 5}, {}, None, "一般", "二级", ["区交通局"], (11, 61, 120)),
    Row("n21", 180, 20, "道路突发事件", "永乐店镇", {}, {}, None, "未判明", "三级", ["区城市管理委"], (None, 45, 90)),
    Row("n22", 195, 5, "火灾事故", "潞源街道", {"injuries": 3}, {}, None, "一般", "一级", ["通州消防救援支队"], (5, 40, 100),
        key_area=("人员密集场所",)),
    Row("n23", 220, 5, "道路交通事故", "台湖镇", {"injuries": 2}, {}, None, "一般", "二级",
        ["通州交通支队", "区城市管理委", "区水务局", "通州公路分局"], (8, 55, 100)),
    Row("n24", 320, 10, "供水突发事件", "中仓街道", {}, {}, None, "未判明", "三级", ["区水务局"], (5, None, None)),
]
KINDS = ("phone_report", "written_report", "detailed_report")
# n02 (较大 from the start) and n11 (较大 after a follow-up) owe the city report: approval, then filing.
CITY = {"n02": (32, 57), "n11": (200, 210)}  # minutes after 22:00: approved, city report filed
FOLLOWUP_N11 = 160  # evacuated 300 -> 6000: 突发环境事件 较大 (5000 or more evacuated)


def hhmm(minutes: int) -> str:
    sign = "-" if minutes < 0 else ""
    return f'"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"'


def flow(value: object) -> str:
    """YAML flow style; keys are plain identifiers, strings stay quoted (JSON is valid YAML)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def status(due: int, filed: int | None) -> tuple[str, int]:
    """(status at the night's end, escalation steps) of one report owed by `due`, filed at `filed`."""
    if filed is not None and filed <= due:
        return "met", 0
    if filed is not None:  # a step falls due only strictly before the filing
        return "late", 1 + (filed > due + FAST_CHAIN_STEP2)
    if due > DURATION:
        return "open", 0
    return "missed", 1 + (due + FAST_CHAIN_STEP2 <= DURATION)


def render() -> str:
    out = [
        "# 忙碌的夜班：24起交叠的各类突发事件（综合演练）。由 busy_night.py 生成，勿手改。",
        "# 预期按预案逐条手工判定（分级 1.4.2、响应 4.3、时限 值班值守规定），不取自引擎。",
        "id: busy-night",
        "name: 区应急指挥中心夜班（24起交叠事件）",
        "kind: 综合",
        "organiser: 区应急指挥中心",
        "objectives:",
        "  - 检验多起事件交叠时值班员的接报、报送与时限把控",
        "  - 检验各类事件的定级、响应级别与处置主责部门（2.3.6、4.3）",
        "  - 检验重点地区、敏感事件、重大活动期间提级响应（4.3.1）",
        "  - 检验迟报、漏报的逐级督办（5.5.2）",
        "start: 2026-12-05T22:00:00+08:00",
        f"duration: {hhmm(DURATION)}",
        "",
        "injects:",
    ]
    injects: list[tuple[int, int, str]] = []  # (minute, order, text) sorted below
    expect: list[str] = ["", "expect:"]
    for n, r in enumerate(ROWS):
        location = {"street": r.street, **({"key_area": list(r.key_area)} if r.key_area else {})}
        body = [f"  - at: {hhmm(r.at)}", "    action: report", f"    incident: {r.key}", f"    type: {r.type}",
                f"    occurred: {hhmm(r.at - r.before)}", f"    location: {flow(location)}"]
        body += [f"    facts: {flow(r.facts)}"] if r.facts else []
        body += [f"    flags: {flow(r.flags)}"] if r.flags else []
        body += [f"    asserted_grade: {r.asserted}", f"    asserted_by: {r.lead[0]}"] if r.asserted else []
        injects.append((r.at, n * 10, "\n".join(body)))
        statuses, steps, breaches = {}, {}, 0
        for kind, filed in zip(KINDS, r.filed):
            basis, minutes = DUE[kind]
            due = (r.at if basis == "received" else r.at - r.before) + minutes
            when = None if filed is None or r.at + filed > DURATION else r.at + filed
            statuses[kind], steps[kind] = status(due, when)
            breaches += statuses[kind] in ("late", "missed")
            if when is not None:
                injects.append((when, n * 10 + 1, f"  - {{at: {hhmm(when)}, action: file, incident: {r.key}, kind: {kind}}}"))
        # 4.7.1 (issue 23), the same for every row: 区应急办 tells 区委宣传部 7 minutes after receipt (due
        # 10, "同时"); a 一般 event's lead drafts the 口径 30 minutes after receipt (due 45); the first
        # brief release goes out 45 minutes after receipt (due 60), drafted at 30 and approved at 40 by the
        # 现场指挥部; 区委宣传部 reports a 较大 event to 市委宣传部 20 minutes after it became 较大 (due 30).
        # A 未判明 row is never graded here: its 研判定级 (due 60 after receipt) is missed.
        publicity = [("publicity_briefing", r.at, 10, r.at + 7), ("first_release", r.at, 60, r.at + 45)]
        if r.grade == "一般" or r.key == "n11":  # n11 is 一般 until its follow-up
            publicity.append(("release_caliber", r.at, 45, r.at + 30))
        if r.grade == "未判明":
            publicity.append(("grade_determination", r.at, 60, None))
        became_larger = {"n02": r.at, "n11": FOLLOWUP_N11}.get(r.key)
        if became_larger is not None:
            publicity.append(("city_publicity_report", became_larger, 30, became_larger + 20))
        # 4.1.5 及时续报 (obligations.yaml's cadence, our choice): while 一级, every 60 minutes; 二级, 120. The
        # lead files a progress follow-up 10 minutes before each falls due; the last one owed is still open
        # at the night's end. n11 is 三级 until its follow-up makes it 一级.
        cadence = {"一级": 60, "二级": 120}.get(r.level)
        if cadence is not None:
            basis_at = FOLLOWUP_N11 if r.key == "n11" else r.at
            while basis_at + cadence - 10 <= DURATION:
                basis_at += cadence - 10
                injects.append((basis_at, n * 10 + 6, f"  - {{at: {hhmm(basis_at)}, action: followup, incident: {r.key}, "
                                "note: 续报：处置进展}"))
            statuses["followup"], _ = status(basis_at + cadence, None)
            breaches += statuses["followup"] == "missed"
        for kind, basis_at, minutes, filed in publicity:
            when = None if filed is None or filed > DURATION else filed
            statuses[kind], _ = status(basis_at + minutes, when)
            breaches += statuses[kind] in ("late", "missed")
            if when is None:
                continue
            release = (f", release: {{drafted: {hhmm(r.at + 30)}, drafted_by: 区委宣传部, approved: {hhmm(r.at + 40)}, "
                       "approved_by: 现场指挥部}" if kind == "first_release" else "")
            injects.append((when, n * 10 + 5, f"  - {{at: {hhmm(when)}, action: file, incident: {r.key}, kind: {kind}{release}}}"))
        extra: list[str] = []
        if r.key in CITY:
            approved, filed_city = CITY[r.key]
            injects.append((approved, n * 10 + 2, f"  - {{at: {hhmm(approved)}, action: approve, incident: {r.key}}}"))
            injects.append((filed_city, n * 10 + 3,
                            f"  - {{at: {hhmm(filed_city)}, action: file, incident: {r.key}, kind: city_report}}"))
            statuses["city_report"] = "met"
            extra.append("    approved: true")
        if r.key == "n11":
            injects.append((FOLLOWUP_N11, n * 10 + 4, f"  - {{at: {hhmm(FOLLOWUP_N11)}, action: followup, incident: n11, "
                            "facts: {evacuated: 6000}, note: 续报：疏散转移增至6000人}"))
            extra += ["    regraded_to: [较大]", "    level_adjusted_to: [一级]"]
        notified = [*r.lead, "区应急办", r.street, *r.notified]
        expect += [f"  {r.key}:", f"    grade: {r.grade}", f"    response_level: {r.level}", f"    lead_units: {flow(r.lead)}",
                   f"    notified: {flow(notified)}", f"    obligations: {flow(statuses)}", f"    breaches: {breaches}",
                   f"    escalation_steps: {{phone_report: {steps['phone_report']}}}", *extra]
    out += [text for _, _, text in sorted(injects)]
    return "\n".join(out + expect) + "\n"


if __name__ == "__main__":
    path = HERE / "busy-night.yaml"
    path.write_text(render(), encoding="utf-8")
    print(path)
