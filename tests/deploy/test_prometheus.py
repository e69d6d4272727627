"""deploy/: the Prometheus config and alert rules pass promtool, the alerts fire on their unit tests,
and the Grafana dashboard queries only metrics the service exports (issue 6, part 5)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "yingji-dashboard.json"

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
    "up",
}
HISTOGRAMS = {"yingji_decision_latency_seconds", "yingji_breach_detection_lag_seconds", "yingji_gc_pause_seconds"}
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
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(set(ids)) == len(ids), f"duplicate panel ids: {ids}"


def test_alert_rules_query_only_exported_metrics():
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert {"YingjiObligationBreaches", "YingjiConsumerLagHigh", "YingjiDeadLetters", "YingjiWorkerDown"} <= set(alerts)
    for name, rule in alerts.items():
        unknown = {exported(n) for n in metric_names(rule["expr"])} - METRICS
        assert not unknown, f"alert {name} queries unknown metrics {sorted(unknown)}"
        assert rule["annotations"]["summary"], name


def test_scrape_jobs_are_the_api_and_the_worker():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["yingji-api"]["static_configs"][0]["targets"] == ["127.0.0.1:8080"]
    assert jobs["yingji-worker"]["static_configs"][0]["targets"] == ["127.0.0.1:6066"]
    assert all(j.get("metrics_path", "/metrics") == "/metrics" for j in jobs.values())
    assert config["rule_files"] == ["alerts.yml"]
