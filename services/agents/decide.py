"""Stage `decide`: a reported incident -> the plan's decision and one notification per unit to tell.

Decode the raw bytes, call the pure engine, emit. A record seen again (same incident, same report)
produces nothing new; a record that cannot be decoded or decided goes to the dead-letter topic.
"""

from __future__ import annotations

import asyncio

import structlog
from pydantic import ValidationError

from playbooks.engine import ReportRejected, decide
from services import metrics
from services.agents.deadletter import dead_letter, reason_label
from services.app import app, runtime
from topics.catalog import DEAD_LETTERS, INCIDENTS_DECIDED, INCIDENTS_REPORTED, NOTIFICATIONS_REQUESTED
from topics.models import Decision, IncidentDecided, IncidentReported, NotificationRequested

STAGE = "decide"
log = structlog.get_logger("yingji").bind(stage=STAGE)


def _raw_topic(name: str):
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


reported_topic = _raw_topic(INCIDENTS_REPORTED.name)
decided_topic = _raw_topic(INCIDENTS_DECIDED.name)
notifications_topic = _raw_topic(NOTIFICATIONS_REQUESTED.name)
deadletter_topic = _raw_topic(DEAD_LETTERS.name)

# incident id -> report id already decided; keyed like the reported topic, so co-partitioned with it.
decided_reports = app.Table("decided-reports", key_type=str, value_type=str)


def decision_record(rec: IncidentReported, decision: Decision) -> IncidentDecided:
    return IncidentDecided(
        id=f"{rec.incident_id}.decision.{rec.report.report_id}",
        incident_id=rec.incident_id,
        drill=rec.report.drill,
        decision=decision,
        accepted_at=rec.accepted_at,
    )


def notification_records(rec: IncidentReported, decision: Decision) -> list[NotificationRequested]:
    """One per unit to tell now; notices that wait for approval (4.1.3) are not sent here."""
    out = []
    for notice in decision.notify:
        if notice.after_approval:
            continue
        key = f"{rec.incident_id}.{notice.unit_id}.{notice.rule}"
        out.append(
            NotificationRequested(
                id=key,
                dedup_key=key,
                incident_id=rec.incident_id,
                drill=rec.report.drill,
                unit_id=notice.unit_id,
                unit=notice.unit,
                why=notice.why,
                rule=notice.rule,
                section=notice.section,
                requested_at=decision.decided_at,
            )
        )
    return out


async def _send_dead_letter(raw: bytes, message, error: Exception) -> None:
    record = dead_letter(
        raw=raw,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        stage=STAGE,
        error=error,
        now=runtime.clock.now(),
    )
    metrics.DEAD_LETTERS.labels(stage=STAGE, reason=reason_label(error)).inc()
    log.warning("dead_letter", topic=message.topic, offset=message.offset, fields=record.fields)
    fut = await deadletter_topic.send(key=message.topic.encode(), value=record.model_dump_json().encode())
    await fut


@app.agent(reported_topic)
async def decide_incidents(stream):
    async for event in stream.events():
        raw: bytes = event.value if isinstance(event.value, bytes) else bytes(event.value or b"")
        try:
            await handle_reported(raw)
        except (ValidationError, ReportRejected) as exc:
            await _send_dead_letter(raw, event.message, exc)
        except Exception as exc:  # noqa: BLE001 - Faust acks a record whose agent raised: never lose it silently
            log.exception("decide_failed", offset=event.message.offset)
            await _send_dead_letter(raw, event.message, exc)


async def handle_reported(raw: bytes) -> None:
    rec = IncidentReported.model_validate_json(raw)
    if decided_reports.get(rec.incident_id) == rec.report.report_id:
        metrics.DUPLICATES.labels(stage=STAGE).inc()
        return
    now = runtime.clock.now()
    decision = decide(rec.report, runtime.plan, now, incident_id=rec.incident_id)
    key = rec.incident_id.encode()
    futures = [await decided_topic.send(key=key, value=decision_record(rec, decision).model_dump_json().encode())]
    notes = notification_records(rec, decision)
    for note in notes:
        futures.append(await notifications_topic.send(key=note.dedup_key.encode(), value=note.model_dump_json().encode()))
    await asyncio.gather(*futures)  # acknowledged by the broker before the report counts as decided
    decided_reports[rec.incident_id] = rec.report.report_id
    drill = str(rec.report.drill).lower()
    metrics.INCIDENTS.labels(
        category=decision.category, grade=decision.grade.value, level=decision.response_level.value, drill=drill
    ).inc()
    for note in notes:
        metrics.NOTIFICATIONS.labels(rule=note.rule, drill=drill).inc()
    metrics.DECISION_LATENCY.observe(max(0.0, (now - rec.accepted_at).total_seconds()))
    log.info(
        "decided",
        incident_id=rec.incident_id,
        drill=rec.report.drill,
        grade=decision.grade.value,
        level=decision.response_level.value,
        type=decision.type_id,
        notifications=len(notes),
    )
