"""The ledger as files: an .xlsx (openpyxl, through services.duty.files.write_xlsx) and the draft 通报
as the .docx a district office files (python-docx, the layout of services.web.documents). Times as
people in Beijing read them. Nothing here decides: the rows, counts and deadlines are the ledger's."""

from __future__ import annotations

import io
from datetime import datetime

from docx import Document
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml.ns import qn
from docx.shared import Pt

from playbooks.documents import NUMERALS, local
from playbooks.ledger.circular import CircularDraft
from playbooks.ledger.rules import COUNT_LABELS, Ledger, Outcome
from services.duty.files import write_xlsx
from services.web.documents import FONT

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ROW_HEAD = ("事件编号", "事件类型", "报送事项", "责任单位", "应报时间", "报送时间", "结果", "迟报（分钟）", "缺少要素",
            "信息来源", "接报滞后（分钟）", "依据", "报送依据", "说明")
UNIT_HEAD = ("责任单位", "按时", "迟报", "漏报", "内容不全", "接报滞后", "未到期", "违规合计", "迟报分钟合计", "疑似瞒报")


def when(t: datetime | None) -> str:
    """A time as the sheet and the 通报 write it (Asia/Shanghai)."""
    return local(t) if t is not None else ""


def ledger_xlsx(book: Ledger) -> bytes:
    labels = {o.id: o.label for o in book.outcomes}
    rows: list[list[object]] = [list(ROW_HEAD)]
    for r in book.rows:
        rows.append([r.incident_id, r.type_name, r.label, r.unit, when(r.due_at), when(r.filed_at), r.outcome_label,
                     r.minutes_late, "、".join(r.items_missing), r.source, r.source_delay_minutes, r.section, r.obligation_section, r.reason])
    units: list[list[object]] = [list(UNIT_HEAD)]
    for u in book.units:
        units.append([u.unit, *(u.counts[o.value] for o in (Outcome.ON_TIME, Outcome.LATE, Outcome.MISSED,
                                                             Outcome.INCOMPLETE, Outcome.SOURCE_DELAY, Outcome.PENDING)),
                      u.breaches, u.minutes_late, u.concealment_flags])
    counts = list(COUNT_LABELS)
    flags: list[list[object]] = [["事件编号", "事件类型", "首报单位", "首报时间", "首报等级",
                                  *(f"首报{COUNT_LABELS[k]}" for k in counts), "续报时间", "续报等级",
                                  *(f"续报{COUNT_LABELS[k]}" for k in counts), "理由", "状态"]]
    for f in book.flags:
        flags.append([f.incident_id, f.type_name, f.unit, when(f.first.at), f.first.grade,
                      *(f.first.counts[k] for k in counts), when(f.followup.at), f.followup.grade,
                      *(f.followup.counts[k] for k in counts), "；".join(f.reasons), f.status])
    sources: list[list[object]] = [["信息来源", "接报时已过时限（件）", "合计（分钟）"]]
    sources += [[s.source, s.deadlines_passed, s.minutes] for s in book.sources]
    about = [["项目", "内容"], ["期间", f"{when(book.period_from)} 至 {when(book.period_to)}"],
             ["统计时间", when(book.now)], ["范围", "演练" if book.drill else "实战（不含演练）"],
             *(["结果：" + labels[o.id], f"{o.rule}（{o.section}）"] for o in book.outcomes),
             *(["说明", n] for n in book.notes)]
    return write_xlsx({"台账": rows, "单位汇总": units, "疑似瞒报": flags, "接报滞后": sources, "说明": about})


def circular_docx(draft: CircularDraft, *, drill: bool = False) -> bytes:
    doc = Document()
    body = doc.styles["Normal"]
    body.font.name, body.font.size = FONT, Pt(16)  # 三号
    body.element.rPr.rFonts.set(qn("w:eastAsia"), FONT)
    title = doc.add_paragraph()
    title.alignment = WD_ALIGN_PARAGRAPH.CENTER
    run = title.add_run(("【演练】" if drill else "") + draft.title + "（草稿）")
    run.bold, run.font.size = True, Pt(22)  # 二号
    for label, value in (("印发单位", draft.issuer), ("签发人", ""), ("印发时间", when(draft.issued_at)),
                         ("通报期间", f"{when(draft.period_from)} 至 {when(draft.period_to)}")):
        doc.add_paragraph(f"{label}：{value}")
    doc.add_paragraph(draft.opening)
    if not draft.units:
        doc.add_paragraph("本期间无迟报、漏报及报告内容不全情况。")
    for n, unit in enumerate(draft.units):
        counts = "、".join(f"{k}{v}次" for k, v in unit.counts.items())
        p = doc.add_paragraph()
        p.add_run(f"{NUMERALS[n] if n < len(NUMERALS) else n + 1}、{unit.unit}（{counts}）").bold = True
        table = doc.add_table(rows=1, cols=6)
        table.style = "Table Grid"
        for cell, text in zip(table.rows[0].cells, ("事件编号", "事件类型", "报送事项", "应报时间", "情况", "迟报（分钟）")):
            cell.text = text
        for b in unit.breaches:
            what = b.outcome_label + (f"（缺少：{'、'.join(b.items_missing)}）" if b.items_missing else "")
            cells = table.add_row().cells
            for cell, text in zip(cells, (b.incident_id, b.type_name, b.label, when(b.due_at), what,
                                          f"{b.minutes_late:g}" if b.minutes_late is not None else "")):
                cell.text = text
        section = draft.rectification_section.split("（")[0]  # "5.5.1", without the plan's words beside it
        doc.add_paragraph(f"限期整改：请于{when(unit.rectify_by)}前报送整改情况（预案{section}）。")
    doc.add_paragraph(draft.closing)
    if draft.flags_for_review:
        doc.add_paragraph(f"另：本期间续报明显高于首报的{draft.flags_for_review}起，已标记为疑似瞒报，待核实后另行处理，"
                          "不列入本通报。")
    doc.add_paragraph(f"注：{draft.rectification_note}")
    doc.core_properties.title = draft.title
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()
