"""Dead letters: a record that cannot be decoded or validated, with the reason and the original bytes."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime

from pydantic import ValidationError

from topics.models import DeadLetter


def dead_letter(
    *, raw: bytes, topic: str, partition: int, offset: int, stage: str, error: Exception, now: datetime
) -> DeadLetter:
    if isinstance(error, ValidationError):
        fields = [".".join(str(p) for p in e["loc"]) or "(record)" for e in error.errors()]
        reason = "; ".join(
            f"{f}: {e['msg']}" for f, e in zip(fields, error.errors())
        )
    else:
        problems = getattr(error, "problems", None)
        fields = [p.field for p in problems] if problems else []
        reason = str(error) if problems else f"internal error: {type(error).__name__}"
    digest = hashlib.sha256(raw).hexdigest()[:16]
    return DeadLetter(
        id=f"dl-{topic}-{partition}-{offset}-{digest}",
        source_topic=topic,
        partition=partition,
        offset=offset,
        stage=stage,
        reason=reason[:4000],
        fields=[f[:200] for f in fields[:50]],
        original_b64=base64.b64encode(raw).decode(),
        failed_at=now,
    )


def reason_label(error: Exception) -> str:
    """A bounded label for metrics: the kind of failure, never the content."""
    if isinstance(error, ValidationError):
        return "invalid_json" if any(e["type"] == "json_invalid" for e in error.errors()) else "invalid_record"
    if hasattr(error, "problems"):
        return "rejected_by_plan"
    return "internal_error"
