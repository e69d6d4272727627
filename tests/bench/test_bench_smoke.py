"""The benchmark harness cannot rot: `python -m tests.bench --smoke` runs every benchmark at small
sizes on a local Apache Kafka and writes its JSON. Figures are never asserted on: only that each is
there, with its unit, beside the machine and the settings it was measured with."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from services.settings import REPO_ROOT
from tests.bench.harness import NAMES

pytestmark = pytest.mark.e2e

EXPECTED = {
    "engine.decisions": "decisions/s",
    "engine.decisions_first_seen": "decisions/s",
    "pipeline.throughput": "incidents/s",
    "pipeline.bare_aiokafka": "records/s",
    "pipeline.bare_faust": "records/s",
    "pipeline.ratio_vs_bare_faust": "x",
    "pipeline.ratio_vs_bare_aiokafka": "x",
    "pipeline.light_latency_p50": "ms",
    "pipeline.light_latency_p99": "ms",
    "pipeline.light_latency_max": "ms",
    "pipeline.latency_p50": "ms",
    "pipeline.latency_p99": "ms",
    "pipeline.latency_max": "ms",
    "deadlines.open_obligations": "obligations",
    "deadlines.lag_p50": "s",
    "deadlines.lag_p99": "s",
    "deadlines.lag_max": "s",
    "deadlines.recorded_minus_at_p99": "s",
    "deadlines.visible_lag_p99": "s",
    "deadlines.new_report_s": "s",
    "recovery.serve_s": "s",
    "recovery.tables_s": "s",
    "drills.sim_hours": "sim-h/s",
    "delivery.mail_latency_p50": "ms",
    "delivery.mail_latency_p99": "ms",
    "delivery.ack_to_ladder_stopped_p99": "ms",
    "delivery.robot_posts_max_per_60s": "posts",
    "delivery.robot_every_notice_in_a_post": "bool",
}


def test_smoke_bench_reports_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    # every phase but the board's: its page at size is tests/pages/test_board_scale.py's in `make test`, and its
    # bench (Chromium against a stack of its own, a minute or more) `make bench-board`'s and `make bench`'s
    phases = [name for name in NAMES if name != "board"]
    proc = subprocess.run([sys.executable, "-m", "tests.bench", "--smoke", "--only", *phases, "--out", str(out)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text(encoding="utf-8"))

    assert doc["mode"] == "smoke"
    assert doc["machine"]["cores"] >= 1
    assert doc["machine"]["python"] and doc["machine"]["kafka"]
    assert doc["failures"] == {}
    rows = {r["name"]: r for r in doc["results"]}
    assert set(EXPECTED) <= set(rows), sorted(set(EXPECTED) - set(rows))
    for name, unit in EXPECTED.items():
        row = rows[name]
        assert isinstance(row["figure"], (int, float)) and row["figure"] == row["figure"], (name, row["figure"])
        assert row["unit"] == unit, (name, row["unit"])
        assert row["settings"], name
    assert {name.split(".")[0] for name in rows} == set(phases)
    for name, row in rows.items():  # every row with a target says whether it was met
        assert (row["met"] is None) == (row["target"] == ""), name
    assert "pipeline.ratio_vs_bare_faust" in proc.stdout  # the table was printed
