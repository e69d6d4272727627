"""Whole log lines from every process: several processes sharing one log file never glue lines together."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

WRITER = """
import sys
import structlog
from services import logs

logs.configure(json=True)
log = structlog.get_logger("yingji", stage="test")
for i in range(int(sys.argv[1])):
    log.info("schedule_rebuilt", writer=sys.argv[2], i=i, pad="x" * 300)
"""


@pytest.mark.parametrize("unbuffered", ["0", "1"], ids=["buffered", "unbuffered"])
def test_processes_sharing_a_log_file_write_whole_json_lines(tmp_path, unbuffered):
    path = tmp_path / "shared.log"
    lines_each, writers = 3000, 4
    with path.open("ab") as log:  # as services/local/stack.py hands the workers their log
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(lines_each), str(w)], stdout=log, stderr=log,
                                  env={"PYTHONUNBUFFERED": unbuffered, "PATH": "/usr/bin:/bin",
                                       "PYTHONPATH": ":".join(sys.path)})
                 for w in range(writers)]
        for proc in procs:
            assert proc.wait(timeout=120) == 0
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == lines_each * writers
    seen = {(rec["writer"], rec["i"]) for rec in map(json.loads, lines)}  # a glued line fails to parse here
    assert len(seen) == lines_each * writers


def test_a_line_goes_to_stderr_as_it_is_when_written(monkeypatch):
    """Not to the stderr there was when logging was configured: under pytest each test has its own, and a logger
    holding an earlier test's closed one failed with 'I/O operation on closed file' (tests/services/test_district_map.py)."""
    import io

    import structlog

    from services import logs

    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    logs.configure(json=True)
    later = io.StringIO()
    monkeypatch.setattr(sys, "stderr", later)
    structlog.get_logger("yingji", stage="test").error("district_grid_does_not_fit", version="abc")
    assert json.loads(later.getvalue())["event"] == "district_grid_does_not_fit" and first.getvalue() == ""
