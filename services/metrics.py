"""Prometheus metrics of the pipeline, in one registry; no personal data or unbounded ids in labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

INCIDENTS = Counter(
    "yingji_incidents_total", "Incidents decided", ["category", "grade", "level", "drill"], registry=REGISTRY
)
DUPLICATES = Counter(
    "yingji_duplicate_reports_total", "Reports seen again and not re-decided", ["stage"], registry=REGISTRY
)
NOTIFICATIONS = Counter(
    "yingji_notifications_total", "Notification records produced", ["rule", "drill"], registry=REGISTRY
)
DEAD_LETTERS = Counter(
    "yingji_dead_letters_total", "Records sent to the dead-letter topic", ["stage", "reason"], registry=REGISTRY
)
DECISION_LATENCY = Histogram(
    "yingji_decision_latency_seconds",
    "Report accepted by the API or CLI -> decision produced",
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BREACHES = Counter(
    "yingji_obligation_breaches_total", "Obligations whose due time passed unfiled", ["kind", "drill"], registry=REGISTRY
)
BREACH_LAG = Histogram(
    "yingji_breach_detection_lag_seconds",
    "Due time -> breach detected",
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 30, 300, 3600),
)
ESCALATIONS = Counter("yingji_escalations_total", "Escalation steps taken", ["step", "drill"], registry=REGISTRY)
OBLIGATIONS_OPEN = Gauge(
    "yingji_obligations_open", "Open (unfiled, not yet due or breached) obligations of live incidents", ["kind"],
    registry=REGISTRY,
)
INCIDENTS_OPEN = Gauge(
    "yingji_incidents_open", "Live incidents not yet ended, by response level", ["level"], registry=REGISTRY
)
CONSUMER_LAG = Gauge(
    "yingji_consumer_lag", "Records not yet consumed by the worker, by topic", ["topic"], registry=REGISTRY
)
DUE_CHECKS = Gauge(
    "yingji_due_checks", "Due checks of this worker: incidents due and not yet checked (waiting); partitions with a due tick sent and not yet handled (ticks_in_flight)",
    ["state"], registry=REGISTRY,
)
GC_PAUSE = Histogram(
    "yingji_gc_pause_seconds", "Python garbage collection pauses of this process", ["generation"], registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)

# --- duty (issue 18): unit labels are the plan's units (bounded); never a person
DUTY_GAP = Gauge(
    "yingji_duty_gap_seconds", "Seconds of the next 30 days with a required post of the unit unstaffed",
    ["unit"], registry=REGISTRY,
)
DUTY_VIOLATIONS = Gauge(
    "yingji_duty_rule_violations", "Duty rule violations of the unit's roster over the next 30 days",
    ["unit", "rule"], registry=REGISTRY,
)
HANDOVERS_UNCONFIRMED = Gauge(
    "yingji_duty_handovers_unconfirmed", "Handovers (交接班) opened and not yet confirmed", ["unit"], registry=REGISTRY,
)
HANDOVERS = Counter(
    "yingji_duty_handovers_total", "Handover events recorded (opened, confirmed, escalated)", ["unit", "kind"],
    registry=REGISTRY,
)
DUTY_UNVERIFIED = Gauge(
    "yingji_duty_unverified_on_duty",
    "People on duty now at the unit (any post, its own roster) who never acknowledged a test message: contacts unverified",
    ["unit"], registry=REGISTRY,
)
NOTICES_ADDRESSED = Counter(
    "yingji_duty_notices_addressed_total", "Notices addressed to a person on duty, by where the answer came from",
    ["source", "drill"], registry=REGISTRY,
)

# --- delivery (issue 19): channel labels are channels.yaml's ids (bounded); never a person or address
DELIVERIES = Counter(
    "yingji_deliveries_total", "Delivery records written, by channel and outcome (attempted, accepted, delivered, failed, in_doubt)",
    ["channel", "outcome", "drill"], registry=REGISTRY,
)
DELIVERY_SEND_SECONDS = Histogram(
    "yingji_delivery_send_seconds", "From the notice's requested_at (a ladder step's own time) to the channel's acceptance",
    ["channel"], registry=REGISTRY, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 180, 600),
)
ACK_SECONDS = Histogram(
    "yingji_ack_seconds", "From the notice's requested_at to its first ack (已阅)", registry=REGISTRY,
    buckets=(5, 15, 30, 60, 120, 180, 300, 600, 1200, 1800, 3600),
)
LADDER_STEPS = Counter(
    "yingji_ladder_steps_total", "Re-notification ladder steps taken, by step", ["step", "drill"], registry=REGISTRY,
)
UNDELIVERABLE = Counter(
    "yingji_notices_undeliverable_total", "Notice steps that reached nobody (every channel failed, or nobody on duty)",
    ["drill"], registry=REGISTRY,
)
NOTICES_UNACKNOWLEDGED = Gauge(
    "yingji_notices_unacknowledged", "Live notices not acknowledged: pending (within their ladder) or past_ladder (every step taken)",
    ["state"], registry=REGISTRY,
)
CHANNEL_FAILING = Gauge(
    "yingji_channel_failing", "1 while the channel's last 5 results were all failures", ["channel"], registry=REGISTRY,
)

# --- the ledger's 通报 and 限期整改 (issue 23, 5.5.1): no unit, circular or person in a label
CIRCULARS_ISSUED = Counter(
    "yingji_ledger_circulars_issued_total", "通报 issued (POST /ledger/circulars accepted and written)", registry=REGISTRY,
)
RECTIFICATION_STEPS = Counter(
    "yingji_ledger_rectification_steps_total",
    "Chase steps of a 限期整改 not reported, written by the worker's timer: remind (整改提醒) or overdue (督办)",
    ["step"], registry=REGISTRY,
)
