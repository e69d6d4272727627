"""Reports as documents (issue 23 item 2, 4.1.5): a draft carries every item the plan lists, from the
incident's own records; what the records cannot say is left 【待补充】 and named; a filed text is read
for the same items."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from playbooks.documents import ITEMS, TO_FILL, draft, missing_items
from playbooks.lifecycle import handle, start
from tests.playbooks.conftest import make_report
from topics.models import FollowupFacts, IncidentCommand, IncidentReported, ReportFiled, ReportKind

RECEIVED = datetime(2026, 11, 22, 1, 20, tzinfo=timezone.utc)  # 09:20 in Beijing
NOW = RECEIVED + timedelta(minutes=40)
SEVEN = ("time", "place", "source", "nature", "harm", "trend", "measures")  # 4.1.5's list, in its order


def opened(plan, **over):
    report = make_report(**over)
    rec = IncidentReported(id=report.report_id, incident_id=report.report_id, report=report, accepted_at=RECEIVED)
    return start(rec, plan, RECEIVED)


def test_the_items_are_the_plans_in_its_order():
    assert tuple(i for i, _ in ITEMS[:7]) == SEVEN
    assert [label for _, label in ITEMS[:7]] == ["时间", "地点", "信息来源", "事件性质", "危害程度", "发展趋势", "已采取的措施"]


ROWS = [  # (report overrides, item, what its text must say, missing?)
    pytest.param({}, "time", "2026年11月22日 09:15发生，2026年11月22日 09:20接报", False, id="4.1.5-时间-beijing-time"),
    pytest.param({"location": {"street": "梨园镇", "address": "某小区3号楼"}}, "place", "梨园镇、某小区3号楼", False,
                 id="4.1.5-地点-street-and-address"),
    pytest.param({"source": "110报警"}, "source", "110报警", False, id="4.1.5-信息来源"),
    pytest.param({}, "source", TO_FILL, True, id="4.1.5-信息来源-unknown-left-to-fill"),
    pytest.param({}, "nature", "燃气事故，一般", False, id="4.1.5-事件性质-type-and-grade"),
    pytest.param({"facts": {"deaths": 3, "injuries": 8}}, "harm", "死亡3人，受伤8人", False, id="4.1.5-危害程度-counts"),
    pytest.param({}, "harm", "暂无人员伤亡和财产损失报告", False, id="4.1.5-危害程度-none-reported"),
    pytest.param({"flags": {"may_escalate": True}}, "trend", "有进一步扩大、升级的可能", False, id="4.1.5-发展趋势-from-flags"),
    pytest.param({}, "trend", TO_FILL, True, id="4.1.5-发展趋势-not-guessed"),
    pytest.param({}, "measures", "响应，由区城市管理委牵头处置", False, id="4.1.5-已采取的措施-level-and-lead"),
]


@pytest.mark.parametrize(("over", "item", "says", "missing"), ROWS)
def test_a_draft_item(plan, over, item, says, missing):
    out = opened(plan, **over)
    doc = draft(ReportKind.WRITTEN_REPORT, out.state.report, out.state.decision, out.events, NOW)
    got = {i.id: i for i in doc.items}
    assert says in got[item].text
    assert got[item].missing is missing and (item in doc.missing) is missing


def test_the_progress_names_each_follow_up_that_changed_the_grade(plan):
    out = opened(plan, source="119")
    t = RECEIVED + 30 * timedelta(minutes=1)
    cmd = IncidentCommand(id="c1", incident_id=out.state.incident_id, body=ReportFiled(
        id="f1", incident_id=out.state.incident_id, kind="followup", unit_id="x", filed_at=t, filed_by="值班员",
        followup=FollowupFacts(facts={"deaths": 3})))
    after = handle(out.state, cmd, plan, t)
    doc = draft(ReportKind.DETAILED_REPORT, after.state.report, after.state.decision, [*out.events, *after.events], NOW)
    progress = next(i for i in doc.items if i.id == "progress").text
    assert "一般→较大" in progress and "09:50" in progress
    assert doc.title.endswith("的详细信息报告") and "较大" in next(i for i in doc.items if i.id == "nature").text


def test_the_text_of_a_draft_reads_back_complete_once_filled(plan):
    out = opened(plan, source="110报警", flags={"may_escalate": True})
    doc = draft(ReportKind.WRITTEN_REPORT, out.state.report, out.state.decision, out.events, NOW)
    assert missing_items(doc.as_text()) == ()
    bare = draft(ReportKind.WRITTEN_REPORT, opened(plan).state.report, out.state.decision, out.events, NOW)
    assert missing_items(bare.as_text()) == ("source", "trend")  # 【待补充】 left as it was


@pytest.mark.parametrize(("text", "missing"), [
    ("", SEVEN),
    ("一、时间：9时15分\n二、地点：梨园镇\n三、信息来源：110\n四、事件性质：燃气事故\n五、危害程度：无\n六、发展趋势：可控\n"
     "七、已采取的措施：已疏散", ()),
    ("一、时间：9时15分\n二、地点：\n三、信息来源：110\n", ("place", "nature", "harm", "trend", "measures")),
    ("一、时间：9时15分\n七、已采取的措施：\n  已疏散周边群众\n", ("place", "source", "nature", "harm", "trend")),
], ids=["empty", "complete", "place-empty-and-four-absent", "an-item-over-two-lines"])
def test_a_filed_text_is_read_for_the_items(text, missing):
    assert missing_items(text) == missing


def test_no_draft_for_a_report_that_is_not_a_document(plan):
    out = opened(plan)
    with pytest.raises(ValueError, match="kind"):
        draft(ReportKind.PHONE_REPORT, out.state.report, out.state.decision, out.events, NOW)
