"""The benchmark harness cannot rot: `python -m tests.bench --smoke` runs every benchmark at small
sizes on a local Apache Kafka and writes its JSON. Figures are never asserted on: only that each is
there, with its unit, beside the machine and the settings it was measured with.

In a whole run (`make test`) the smoke run is started in the background when the layers without a broker
or a browser begin (tests/playbooks, tests/services, tests/topics: one pytest process, one core), and this
test, moved last, waits for it and checks its JSON: the two minutes of the bench's own brokers and workers
overlap those layers instead of following them (tests/conftest.py: pytest_collection_modifyitems,
pytest_runtest_setup). Its figures there are then taken beside that pytest process; `make bench-smoke` and
`make bench` take them alone."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.settings import REPO_ROOT
from tests.bench.harness import NAMES

pytestmark = pytest.mark.e2e

EXPECTED = {
    "whatif.night.deadline": "sim-h/s",
    "whatif.year.deadline": "s",
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


TIMEOUT_S = 600


@dataclass
class SmokeRun:
    """`python -m tests.bench --smoke` under way in a session of its own, its output in files of `dir`."""

    proc: subprocess.Popen
    dir: Path
    started: float

    @property
    def out(self) -> Path:
        return self.dir / "bench.json"

    @classmethod
    def start(cls, directory: Path) -> SmokeRun:
        # every phase but the board's: its page at size is tests/pages/test_board_scale.py's in `make test`, and its
        # bench (Chromium against a stack of its own, a minute or more) `make bench-board`'s and `make bench`'s
        phases = [name for name in NAMES if name != "board"]
        with (directory / "stdout").open("wb") as out, (directory / "stderr").open("wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "tests.bench", "--smoke", "--only", *phases,
                                     "--out", str(directory / "bench.json")], cwd=REPO_ROOT, stdout=out, stderr=err,
                                    start_new_session=True)
        return cls(proc, directory, time.monotonic())

    def wait(self) -> tuple[int, str, str]:
        """Its exit code, stdout and stderr; SIGTERM (the bench stops its brokers and workers on it) and a
        failure after TIMEOUT_S from its start."""
        try:
            code = self.proc.wait(timeout=max(1.0, TIMEOUT_S - (time.monotonic() - self.started)))
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"the smoke bench took over {TIMEOUT_S} s:\n" + self.text("stderr")[-3000:])
        return code, self.text("stdout"), self.text("stderr")

    def text(self, name: str) -> str:
        return (self.dir / name).read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


BACKGROUND: list[SmokeRun] = []  # the run tests/conftest.py started early, if it did


def start_in_background() -> SmokeRun:
    run = SmokeRun.start(Path(tempfile.mkdtemp(prefix="yingji-bench-smoke-")))
    BACKGROUND.append(run)
    return run


def test_smoke_bench_reports_every_figure(tmp_path):
    run = BACKGROUND[0] if BACKGROUND else SmokeRun.start(tmp_path)
    try:
        code, stdout, stderr = run.wait()
    finally:
        run.stop()
    out = run.out
    assert code == 0, stdout[-3000:] + stderr[-3000:]
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
    assert {name.split(".")[0] for name in rows} == {name for name in NAMES if name != "board"}
    for name, row in rows.items():  # every row with a target says whether it was met
        assert (row["met"] is None) == (row["target"] == ""), name
    assert "pipeline.ratio_vs_bare_faust" in stdout  # the table was printed
    if run in BACKGROUND:  # its folder was a temporary one of its own (tmp_path's is pytest's to clean)
        shutil.rmtree(run.dir, ignore_errors=True)
