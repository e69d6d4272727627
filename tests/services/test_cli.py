"""`yingji classify`: one decision per report, exit 2 naming each bad field, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

GOOD = {"type": "燃气事故（管道）", "occurred_at": "2026-11-22T09:15:00+08:00",
        "received_at": "2026-11-22T09:20:00+08:00", "location": {"street": "梨园镇"}, "facts": {"deaths": 3}}


def classify(stdin: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", "classify", *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_one_report_prints_the_decision():
    out = classify(json.dumps(GOOD, ensure_ascii=False))
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert (d["grade"], d["response_level"], d["lead_units"]) == ("较大", "一级", ["区城市管理委"])
    assert all(o["due_at"].endswith("Z") or "+" in o["due_at"] for o in d["obligations"])
    assert {"notify", "commanders", "reasons"} <= set(d)


def test_json_lines_give_one_line_per_report(tmp_path):
    path = tmp_path / "reports.jsonl"
    path.write_text("\n".join(json.dumps({**GOOD, "report_id": f"r{i}"}, ensure_ascii=False) for i in range(3)))
    out = classify("", str(path), "--compact")
    assert out.returncode == 0
    assert [json.loads(line)["report_id"] for line in out.stdout.splitlines()] == ["r0", "r1", "r2"]


def test_invalid_report_exits_2_naming_each_field():
    bad = {**GOOD, "received_at": "2026-11-22T09:20:00", "facts": {"deaths": -1}, "type": "燃气事故", "extra": 1}
    out = classify(json.dumps(bad, ensure_ascii=False))
    assert out.returncode == 2 and out.stdout == ""
    for field in ("received_at", "facts.deaths", "extra"):
        assert field in out.stderr
    assert "Traceback" not in out.stderr
    out = classify(json.dumps({**GOOD, "type": "不存在", "location": {"street": "火星"}}, ensure_ascii=False))
    assert out.returncode == 2 and "type:" in out.stderr and "location.street:" in out.stderr
