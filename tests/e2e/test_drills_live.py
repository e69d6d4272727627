"""Drills on the running service (issue 7): `drill run` and `drill eval` agree on every expectation of
every shipped scenario, and no drill record reaches a live notification, live metric series or the
live view."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import httpx
import pytest

from playbooks.drill.evaluation import evaluate
from playbooks.drill.scenario import SCENARIOS_DIR, load_scenario
from playbooks.plan import load_plan
from topics.catalog import DRILL_NOTIFICATIONS, NOTIFICATIONS_REQUESTED

pytestmark = pytest.mark.e2e
DRILLS = sorted(SCENARIOS_DIR.glob("*.yaml"))
SPEED = 3600.0


def metric_sum(text: str, name: str, drill: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and f'drill="{drill}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def expectations(evaluation: dict) -> list[tuple]:
    return sorted((e["incident"], e["what"], json.dumps(e["expected"], ensure_ascii=False),
                   json.dumps(e["actual"], ensure_ascii=False), e["passed"]) for e in evaluation["expectations"])


@pytest.fixture(scope="module")
def drill_runs(service):
    """Every shipped scenario started at once on the live service, at 3600× real time."""
    live_before = service.worker_metrics_text()
    runs = {}
    with service.client("drill_controller") as c:
        for path in DRILLS:
            resp = c.post("/drills", json={"scenario": path.read_text(encoding="utf-8"), "speed": SPEED})
            assert resp.status_code == 202, resp.text
            runs[path] = resp.json()["run_id"]
        deadline = time.monotonic() + 120
        results = {}
        while len(results) < len(runs):
            assert time.monotonic() < deadline, "drills did not finish"
            for path, run_id in runs.items():
                body = c.get(f"/drills/{run_id}").json()
                if body["status"] != "running":
                    results[path] = body
            time.sleep(0.5)
    return results, live_before


@pytest.mark.parametrize("path", DRILLS, ids=lambda p: p.stem)
def test_drill_run_agrees_with_drill_eval(drill_runs, path):
    results, _ = drill_runs
    body = results[path]
    assert body["status"] == "done", body.get("error")
    plan = load_plan()
    offline = json.loads(evaluate(load_scenario(path, plan), plan).model_dump_json())
    assert expectations(body["evaluation"]) == expectations(offline)
    assert body["evaluation"]["score"] == offline["score"] == 100.0
    assert body["markdown"].strip()


def test_drills_stay_apart_from_live_traffic(service, drill_runs):
    results, live_before = drill_runs
    run_ids = {b["run_id"] for b in results.values()}
    drill_ids = lambda v: v.get("incident_id", "").split(".")[0] in run_ids  # noqa: E731
    live = [json.loads(r.value) for r in service.read_topic(NOTIFICATIONS_REQUESTED.name)]
    assert not [n for n in live if drill_ids(n)], "a drill notification reached the live topic"
    drill = [json.loads(r.value) for r in service.read_topic(DRILL_NOTIFICATIONS.name)]
    assert drill and all(n["drill"] for n in drill)
    with service.client("viewer") as v:
        live_view = v.get("/incidents", params={"drill": "false", "limit": 5000}).json()["incidents"]
        assert not [i for i in live_view if drill_ids(i)]
        drill_view = v.get("/incidents", params={"drill": "true", "limit": 5000}).json()["incidents"]
        assert len([i for i in drill_view if drill_ids(i)]) >= 24 + 5
    after = service.worker_metrics_text()
    for name in ("yingji_incidents_total", "yingji_obligation_breaches_total", "yingji_escalations_total"):
        assert metric_sum(after, name, "true") > metric_sum(live_before, name, "true"), name
    # live series moved only by live traffic, which this module sent none of: drill counts stay out
    assert metric_sum(after, "yingji_incidents_total", "false") == metric_sum(live_before, "yingji_incidents_total",
                                                                               "false")


def test_cli_drill_run_prints_the_evaluation(service):
    path = next(p for p in DRILLS if p.stem == "gas-explosion")
    env = {"YINGJI_TOKEN": service.tokens["drill_controller"]}
    out = subprocess.run([sys.executable, "-m", "services.cli", "drill", "run", str(path), "--speed", "7200",
                          "--api", service.api, "--strict"], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, **env})
    assert out.returncode == 0, out.stderr
    assert re.search(r"100(\.0)?\s*%", out.stdout), out.stdout[:500]


def test_invalid_scenario_is_refused_naming_line_and_field(service):
    bad = "id: bad\nname: x\nkind: 单项\norganiser: x\nobjectives: [x]\nstart: 2026-11-22T09:00:00+08:00\n" \
          "duration: \"01:00\"\ninjects:\n  - at: \"00:10\"\n    action: report\n    incident: a\n    type: 不存在\n"
    with service.client("drill_controller") as c:
        resp = c.post("/drills", json={"scenario": bad, "speed": 60})
    assert resp.status_code == 422
    fields = resp.json()["fields"]
    assert any(f["line"] == 12 and "type" in f["field"] for f in fields), fields
    with service.client("duty_officer") as c:
        assert c.post("/drills", json={"scenario": bad, "speed": 60}).status_code == 403
