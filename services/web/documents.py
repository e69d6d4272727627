"""A report draft (playbooks.documents) as the .docx a district office files: title, 报送单位, 签发人,
报送时间, then the body item by item in 4.1.5's order. python-docx writes it; nothing here decides."""

from __future__ import annotations

import io
import re

from docx import Document
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml.ns import qn
from docx.shared import Pt

from playbooks.documents import NUMERALS, ReportDraft, local

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
FONT = "仿宋"  # the body face of official documents (GB/T 9704's 仿宋_GB2312 where it is installed)
# What XML 1.0 cannot hold (C0 controls but tab, newline and return; lone surrogates; U+FFFE/FFFF): a report's
# free text may carry them (the contract fuzz run sent \x01) and lxml refuses the whole document, a 500.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    """The text as XML can hold it: each character it cannot replaced by U+FFFD, visibly, not dropped."""
    return _NOT_XML.sub("\ufffd", text)


def as_docx(draft: ReportDraft) -> bytes:
    doc = Document()
    body = doc.styles["Normal"]
    body.font.name, body.font.size = FONT, Pt(16)  # 三号
    body.element.rPr.rFonts.set(qn("w:eastAsia"), FONT)  # Word takes CJK glyphs from eastAsia, not from name
    title = doc.add_paragraph()
    title.alignment = WD_ALIGN_PARAGRAPH.CENTER
    run = title.add_run(xml_text(draft.title))
    run.bold, run.font.size = True, Pt(22)  # 二号
    for label, value in (("报送单位", draft.unit), ("签发人", ""), ("报送时间", local(draft.drafted_at))):
        doc.add_paragraph(xml_text(f"{label}：{value}"))
    for n, item in enumerate(draft.items):
        p = doc.add_paragraph()
        p.add_run(xml_text(f"{NUMERALS[n]}、{item.label}：")).bold = True
        p.add_run(xml_text(item.text))
    doc.core_properties.title = xml_text(draft.title)
    doc.core_properties.identifier = draft.incident_id
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()
