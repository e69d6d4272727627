"""deploy/: the Prometheus config and alert rules pass promtool, the alerts fire on their unit tests,
and the Grafana dashboard queries only metrics the service exports (issue 6, part 5; the duty alerts
and row: issue 18 item 7; the delivery stage's scrape job, alerts and row: issue 19 item 8)."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import typing
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "yingji-dashboard.json"
METRICS_PY = ROOT / "services" / "metrics.py"
DUTY_YAML = ROOT / "playbooks" / "data" / "duty.yaml"

# What the service exports (services/metrics.py, plus the gauges and Prometheus' own `up`).
METRICS = {
    "yingji_incidents_total",
    "yingji_decision_latency_seconds",
    "yingji_notifications_total",
    "yingji_dead_letters_total",
    "yingji_obligation_breaches_total",
    "yingji_breach_detection_lag_seconds",
    "yingji_escalations_total",
    "yingji_duplicate_reports_total",
    "yingji_obligations_open",
    "yingji_incidents_open",
    "yingji_consumer_lag",
    "yingji_gc_pause_seconds",
    "yingji_due_checks",
    "yingji_duty_gap_seconds",
    "yingji_duty_rule_violations",
    "yingji_duty_handovers_unconfirmed",
    "yingji_duty_handovers_total",
    "yingji_duty_notices_addressed_total",
    "yingji_duty_unverified_on_duty",
    "yingji_deliveries_total",
    "yingji_delivery_send_seconds",
    "yingji_ack_seconds",
    "yingji_ladder_steps_total",
    "yingji_notices_undeliverable_total",
    "yingji_notices_unacknowledged",
    "yingji_channel_failing",
    "yingji_ledger_circulars_issued_total",
    "yingji_ledger_rectification_steps_total",
    "up",
}
HISTOGRAMS = {"yingji_decision_latency_seconds", "yingji_breach_detection_lag_seconds", "yingji_gc_pause_seconds",
              "yingji_delivery_send_seconds", "yingji_ack_seconds"}
# The board's summary: each of these must be on the dashboard.
DASHBOARD_MUST_SHOW = METRICS - {"yingji_notifications_total", "yingji_duplicate_reports_total"}


def test_metric_list_matches_what_the_service_registers():
    """The names above are the service's own: a renamed metric breaks the dashboard and this test."""
    from services.metrics import REGISTRY

    registered = {m.name for m in REGISTRY.collect() if m.name.startswith("yingji_") and "faust" not in m.name}
    registered = {n.removesuffix("_total") if n + "_total" in METRICS or n.endswith("_total") else n for n in registered}
    assert {n.removesuffix("_total") for n in METRICS if n.startswith("yingji_")} == registered


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not on PATH: run `make test`, which installs Debian's prometheus package (promtool)")
    return subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "args",
    [
        ("check", "config", "deploy/prometheus/prometheus.yml"),
        ("check", "rules", "deploy/prometheus/alerts.yml"),
        ("test", "rules", "deploy/prometheus/alerts_test.yml"),
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool(args, tmp_path):
    if args[1] == "config":  # the scrape token file must exist for promtool: check a copy beside a stand-in
        copy = tmp_path / "deploy" / "prometheus"
        copy.mkdir(parents=True)
        for f in PROMETHEUS.glob("*.yml"):
            (copy / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
        (tmp_path / ".data").mkdir()
        (tmp_path / ".data" / "metrics.token").write_text("stand-in\n")
        args = (*args[:2], str(copy / "prometheus.yml"))
    result = promtool(*args)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"


# --- metric names used by PromQL expressions ------------------------------------------------

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or",
             "unless", "atan2", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels and numbers left out)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # range and subquery selectors
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\boffset\s+-?[0-9a-z$_]+", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?", s):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


def exported(name: str) -> str:
    """A histogram's _bucket/_sum/_count series belong to the histogram."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name.removesuffix(suffix) in HISTOGRAMS:
            return name.removesuffix(suffix)
    return name


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (kind) (rate(a_total{drill="false"}[5m])) > 0', {"a_total"}),
        ("histogram_quantile(0.99, sum by (le) (rate(b_seconds_bucket[$__rate_interval])))", {"b_seconds_bucket"}),
        ('(x unless x offset 10m) or on (job) up{job=~"a|b"} * 1e3', {"x", "up"}),
        ("sum(rate(c_total[5m])) without (instance) / ignoring(le) d", {"c_total", "d"}),
    ],
)
def test_metric_names_reads_promql(expr, names):
    assert metric_names(expr) == names


def _panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out += panel.get("panels", [])  # panels of a collapsed row
    return [p for p in out if p.get("type") != "row"]


def test_dashboard_parses_and_queries_only_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    used: set[str] = set()
    panels = _panels(dashboard)
    assert panels
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        exprs = [t["expr"] for t in panel.get("targets", [])]
        assert exprs and all(exprs), f"panel {panel['title']!r} has no query"
        for expr in exprs:
            names = {exported(n) for n in metric_names(expr)}
            unknown = names - METRICS
            assert not unknown, f"panel {panel['title']!r} queries unknown metrics {sorted(unknown)}: {expr}"
            used |= names
    missing = DASHBOARD_MUST_SHOW - used
    assert not missing, f"dashboard shows nothing of {sorted(missing)}"
    ids = [p["id"] for p in dashboard["panels"] if p.get("type") == "row"] + [p["id"] for p in panels]
    assert len(set(ids)) == len(ids), f"duplicate panel ids: {ids}"


def test_dashboard_panels_do_not_overlap():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    boxes = [(p["title"], p["gridPos"]) for p in dashboard["panels"]]
    for title, g in boxes:
        assert g["x"] >= 0 and g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, title
    for i, (a, ga) in enumerate(boxes):
        for b, gb in boxes[i + 1:]:
            apart = (ga["x"] + ga["w"] <= gb["x"] or gb["x"] + gb["w"] <= ga["x"]
                     or ga["y"] + ga["h"] <= gb["y"] or gb["y"] + gb["h"] <= ga["y"])
            assert apart, f"panels {a!r} and {b!r} overlap: {ga} {gb}"


def test_dashboard_has_the_duty_row():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    rows = [p for p in dashboard["panels"] if p.get("type") == "row"]
    assert "值班 Duty" in [r["title"] for r in rows]


def _alert_rules() -> list[dict]:
    """Every alerting rule; one alert name may have several rules (DutyRosterGap: one per severity)."""
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))
    return [r for g in rules["groups"] for r in g["rules"] if "alert" in r]


def test_alert_rules_query_only_exported_metrics():
    rules = _alert_rules()
    expected = {"YingjiObligationBreaches", "YingjiConsumerLagHigh", "YingjiDeadLetters", "YingjiWorkerDown",
                "DutyRosterGap", "DutyRuleViolation", "HandoverUnconfirmed", "NoticeToNobody",
                "DeliveryStageDown", "DeliveryChannelFailing", "NoticesPastLadder", "NoticeUndeliverable",
                "DeliveriesInDoubt", "DeliverySlow"}
    assert expected <= {r["alert"] for r in rules}
    for rule in rules:
        name = rule["alert"]
        unknown = {exported(n) for n in metric_names(rule["expr"])} - METRICS
        assert not unknown, f"alert {name} queries unknown metrics {sorted(unknown)}"
        assert rule["annotations"]["summary"], name


def test_every_alert_has_a_firing_and_a_silent_case():
    """alerts_test.yml has, for each alert, a case where it fires and one where it must not."""
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text(encoding="utf-8"))["tests"]
    fires: set[str] = set()
    silent: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {r["alert"] for r in _alert_rules()}
    assert names <= fires, f"no case where these fire: {sorted(names - fires)}"
    assert names <= silent, f"no case where these stay silent: {sorted(names - silent)}"
    # each severity of an alert fires in some case
    severities = {(r["alert"], r["labels"]["severity"]) for r in _alert_rules()}
    fired = {(check["alertname"], a["exp_labels"]["severity"])
             for case in tests for check in case.get("alert_rule_test", []) for a in check.get("exp_alerts") or []}
    assert severities <= fired, f"never fired: {sorted(severities - fired)}"


# --- duty (issue 18 item 7) -----------------------------------------------------------------


def _declared_metrics() -> set[str]:
    """The names services/metrics.py gives its Counter/Gauge/Histogram calls, read from the source."""
    names = set()
    for node in ast.walk(ast.parse(METRICS_PY.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in {"Counter", "Gauge", "Histogram", "Summary"}
                and node.args and isinstance(node.args[0], ast.Constant)):
            names.add(node.args[0].value)
    return names


def _used_metrics() -> set[str]:
    """Every metric an alert rule or a dashboard panel queries."""
    used = {exported(n) for r in _alert_rules() for n in metric_names(r["expr"])}
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in _panels(dashboard):
        for t in panel.get("targets", []):
            used |= {exported(n) for n in metric_names(t["expr"])}
    return used


def test_every_duty_metric_is_alerted_or_shown():
    """A yingji_duty_* metric renamed in services/metrics.py (or one added) fails here until an alert or
    a panel queries it by its new name."""
    declared = {n for n in _declared_metrics() if n.startswith("yingji_duty_")}
    assert len(declared) >= 5, declared
    unused = declared - _used_metrics()
    assert not unused, f"no alert or panel queries {sorted(unused)}"


def _duty() -> dict:
    return yaml.safe_load(DUTY_YAML.read_text(encoding="utf-8"))


def test_handover_alert_waits_duty_yaml_minutes():
    minutes = _duty()["handover_confirm_minutes"]["value"]
    (rule,) = [r for r in _alert_rules() if r["alert"] == "HandoverUnconfirmed"]
    assert rule["for"] == f"{minutes}m"
    assert f"{minutes} 分钟" in rule["annotations"]["description"]
    assert f"handover_confirm_minutes = {minutes}" in rule["annotations"]["source"]


def test_roster_gap_is_critical_for_the_unit_at_the_end_of_every_fallback_chain():
    duty = _duty()
    last = duty["fallback_chain"]["value"][-1]["unit"]
    assert last in duty["twenty_four_hour_units"]["value"]
    by_severity = {r["labels"]["severity"]: r for r in _alert_rules() if r["alert"] == "DutyRosterGap"}
    assert set(by_severity) == {"critical", "warning"}
    assert f'unit="{last}"' in by_severity["critical"]["expr"]
    assert f'unit!="{last}"' in by_severity["warning"]["expr"]
    assert all(r["annotations"]["severity_reason"] for r in by_severity.values())


def test_duty_alerts_match_label_values_that_exist():
    """The label values the duty alerts filter on are the service's: a rule id of duty.yaml, a source
    of OnDuty, a drill label as the worker writes it."""
    from playbooks.duty.roster import OnDuty

    rule_ids = {r["id"] for r in _duty()["rules"]}
    sources = set(typing.get_args(typing.get_type_hints(OnDuty)["source"]))
    assert "nobody" in sources
    exprs = " ".join(r["expr"] for r in _alert_rules() if r["alert"] in {"DutyRuleViolation", "NoticeToNobody"})
    for value in re.findall(r'\brule!?=~?"([^"]+)"', exprs):
        assert value in rule_ids, value
    for value in re.findall(r'\bsource=~?"([^"]+)"', exprs):
        assert value in sources, value
    assert 'drill="false"' in exprs  # str(note.drill).lower() in services/worker/outbox.py


def test_every_duty_alert_names_its_source():
    for rule in _alert_rules():
        if rule["alert"] in {"DutyRosterGap", "DutyRuleViolation", "HandoverUnconfirmed", "NoticeToNobody"}:
            source = rule["annotations"]["source"]
            assert "duty.yaml" in source and "issue 18" in source, rule["alert"]


def test_scrape_jobs_are_the_api_the_worker_and_the_delivery_stage():
    from services.settings import Settings

    defaults = Settings.model_fields
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"yingji-api", "yingji-worker", "yingji-delivery"}
    assert jobs["yingji-api"]["static_configs"][0]["targets"] == ["127.0.0.1:8080"]
    assert jobs["yingji-worker"]["static_configs"][0]["targets"] == ["127.0.0.1:6066"]
    port = defaults["delivery_web_port"].default
    assert jobs["yingji-delivery"]["static_configs"][0]["targets"] == [f"127.0.0.1:{port}"]
    assert all(j.get("metrics_path", "/metrics") == "/metrics" for j in jobs.values())
    assert config["rule_files"] == ["alerts.yml"]


# --- delivery (issue 19 item 8) -------------------------------------------------------------

DELIVERY_ALERTS = {"DeliveryStageDown", "DeliveryChannelFailing", "NoticesPastLadder", "NoticeUndeliverable",
                   "DeliveriesInDoubt", "DeliverySlow"}
DELIVERY_METRICS = {"yingji_deliveries_total", "yingji_delivery_send_seconds", "yingji_ack_seconds",
                    "yingji_ladder_steps_total", "yingji_notices_undeliverable_total",
                    "yingji_notices_unacknowledged", "yingji_channel_failing"}


def test_dashboard_has_the_delivery_row():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    rows = [p for p in dashboard["panels"] if p.get("type") == "row"]
    assert "送达 Delivery" in [r["title"] for r in rows]


def test_the_delivery_alerts_are_their_own_group():
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))["groups"]
    (group,) = [g for g in groups if g["name"] == "yingji-delivery"]
    assert {r["alert"] for r in group["rules"]} == DELIVERY_ALERTS
    for rule in group["rules"]:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        assert "issue 19" in annotations["source"], rule["alert"]


def test_every_delivery_metric_is_alerted_and_shown():
    """Each metric of the delivery stage is on the board; a renamed one fails here and in the list above."""
    declared = _declared_metrics()
    assert DELIVERY_METRICS <= declared, DELIVERY_METRICS - declared
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    shown = {exported(n) for p in _panels(dashboard) for t in p.get("targets", []) for n in metric_names(t["expr"])}
    assert DELIVERY_METRICS <= shown, DELIVERY_METRICS - shown
    alerted = {exported(n) for r in _alert_rules() if r["alert"] in DELIVERY_ALERTS for n in metric_names(r["expr"])}
    assert alerted == (DELIVERY_METRICS - {"yingji_ack_seconds", "yingji_ladder_steps_total"}) | {"up"}


def test_delivery_alerts_match_what_the_stage_writes():
    """The label values the delivery alerts filter on are the stage's: an outcome of DeliveryState, a state of
    the unacknowledged gauge, the drill label as str(drill).lower(), the scrape job's name; and the
    channel-failing description counts the stage's FAILING_AFTER results."""
    from services.delivery import stage
    from topics.delivery import DeliveryState

    rules = {r["alert"]: r for r in _alert_rules() if r["alert"] in DELIVERY_ALERTS}
    exprs = " ".join(r["expr"] for r in rules.values())
    for value in re.findall(r'\boutcome=~?"([^"]+)"', exprs):
        assert value in {s.value for s in DeliveryState}, value
    source = Path(stage.__file__).read_text(encoding="utf-8")
    for value in re.findall(r'\bstate=~?"([^"]+)"', exprs):
        assert f'state="{value}"' in source, value
    assert 'drill="false"' in rules["NoticeUndeliverable"]["expr"]
    assert 'job="yingji-delivery"' in rules["DeliveryStageDown"]["expr"]
    failing = rules["DeliveryChannelFailing"]["annotations"]
    assert f"最近 {stage.FAILING_AFTER} 次" in failing["description"]
    assert f"FAILING_AFTER = {stage.FAILING_AFTER}" in failing["source"]
