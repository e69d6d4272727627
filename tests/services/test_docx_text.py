"""A report's free text may hold characters XML cannot (the contract fuzz run sent \\x01 in an incident's text
and GET .../documents/{kind}?format=docx answered 500): the .docx holds U+FFFD in their place, the rest as is."""

from __future__ import annotations

import io
from datetime import datetime, timezone

from docx import Document

from playbooks.documents import Item, ReportDraft
from services.web.documents import as_docx, xml_text
from topics.models import ReportKind


def test_text_xml_cannot_hold_is_marked_not_dropped_nor_a_failure():
    draft = ReportDraft(kind=ReportKind.WRITTEN_REPORT, incident_id="i-1", title="燃气事故\x0b书面报告", unit="区城市管理委",
                        drafted_at=datetime(2026, 12, 7, tzinfo=timezone.utc),
                        items=(Item(id="what", label="事件经过", text="起火\x01后\x1f扑灭\n\t已疏散"),))
    doc = Document(io.BytesIO(as_docx(draft)))
    texts = [p.text for p in doc.paragraphs]
    assert texts[0] == "燃气事故\ufffd书面报告"
    assert texts[-1] == "一、事件经过：起火\ufffd后\ufffd扑灭\n\t已疏散"


def test_only_what_xml_cannot_hold_is_replaced():
    kept = "".join(chr(c) for c in (9, 10, 13, 0x20, 0x7f, 0x4e2d, 0xfffd, 0x1f600))
    assert xml_text(kept) == kept
    assert xml_text("\x00\x08\x0c\ud800\uffff") == "\ufffd" * 5
