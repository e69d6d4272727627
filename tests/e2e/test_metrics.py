"""Prometheus metrics after a run (issue 6 §3): each metric found with the right values."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from kafka import KafkaProducer

from tests.conftest import unique_id
from tests.waiting import eventually
from topics.catalog import INCIDENTS_REPORTED

pytestmark = pytest.mark.e2e
LINE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>[^}]*)\})? (?P<value>\S+)$')


def scrape(text: str) -> dict[tuple[str, frozenset], float]:
    """Samples by name and labels, summed over the workers' expositions in `text`."""
    out: dict[tuple[str, frozenset], float] = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group("labels") or ""))
            key = (m.group("name"), labels)
            out[key] = out.get(key, 0.0) + float(m.group("value"))
    return out


def value(samples, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def test_metrics_after_a_run(service):
    before = scrape(service.worker_metrics_text())
    now = datetime.now(timezone.utc)
    posted = []
    with service.client() as c:
        for _ in range(3):  # 一般, injured: 二级 (4.3.3)
            body = {"report_id": unique_id("m"), "type": "燃气事故", "occurred_at": (now - timedelta(minutes=1)).isoformat(),
                    "received_at": now.isoformat(), "facts": {"injuries": 1}, "location": {"street": "中仓街道"}}
            assert c.post("/incidents", json=body).status_code == 202
            posted.append(body["report_id"])
        due = {"report_id": unique_id("m"), "type": "燃气事故", "occurred_at": (now - timedelta(minutes=20)).isoformat(),
               "received_at": (now - timedelta(minutes=10) + timedelta(seconds=2)).isoformat()}
        assert c.post("/incidents", json=due).status_code == 202
    producer = KafkaProducer(bootstrap_servers=service.bootstrap, acks="all")
    producer.send(INCIDENTS_REPORTED.name, key=b"garbage", value=b"{not json").get(timeout=10)
    producer.close()
    def done(after) -> bool:
        return (value(after, "yingji_incidents_total", category="accident_disaster", grade="一般", level="二级",
                      drill="false") - value(before, "yingji_incidents_total", category="accident_disaster",
                                              grade="一般", level="二级", drill="false") >= 3
                and value(after, "yingji_obligation_breaches_total", kind="phone_report", drill="false")
                > value(before, "yingji_obligation_breaches_total", kind="phone_report", drill="false")
                and value(after, "yingji_obligations_open", kind="phone_report") >= 3)

    after = eventually(lambda: scrape(service.worker_metrics_text()), until=done, timeout=20, every=0.5,
                       last_on_timeout=True)  # the deltas below say what is missing

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("yingji_incidents_total", category="accident_disaster", grade="一般", level="二级", drill="false") == 3
    assert delta("yingji_incidents_total", category="accident_disaster", grade="一般", level="三级", drill="false") == 1
    assert delta("yingji_decision_latency_seconds_count") == 4
    assert delta("yingji_obligation_breaches_total", kind="phone_report", drill="false") == 1
    # the late report breaches two obligations due 10 minutes after receipt: the phone report and 4.7.1's
    # 通报区委宣传部, each chased from step 1
    assert delta("yingji_obligation_breaches_total", kind="publicity_briefing", drill="false") == 1
    assert delta("yingji_escalations_total", step="1", drill="false") == 2
    assert delta("yingji_breach_detection_lag_seconds_count") == 2  # one per breach
    assert delta("yingji_dead_letters_total", stage="incidents", reason="invalid_json") == 1
    assert delta("yingji_notifications_total", rule="notify.lead_units", drill="false") == 4
    assert value(after, "yingji_obligations_open", kind="phone_report") >= 3
    assert sum(value(after, "yingji_incidents_open", level=lv) for lv in ("一级", "二级", "三级")) >= 4
    assert ("yingji_consumer_lag", frozenset({("topic", INCIDENTS_REPORTED.name)})) in after
    assert any(n.startswith("yingji_faust_") for n, _ in after)  # Faust's own sensors, same registry
    text = service.worker_metrics_text()
    for name in posted:  # no unbounded ids in labels
        assert name not in text
    # the API's /metrics needs a signed-in user
    assert httpx.get(f"{service.api}/metrics", timeout=10).status_code == 401
    assert httpx.get(f"{service.api}/metrics", timeout=10,
                     headers={"Authorization": f"Bearer {service.tokens['viewer']}"}).status_code == 200
