"""The bench knows the workers hold their incidents from each worker's own log file (LocalStack's
log_dir): the latest `schedule_rebuilt` line of every worker since a mark, whole lines only, summed.
A line of another process can never be glued into a file only one process writes; one still being
written is read once its newline is there. No broker needed: the files are written here."""

from __future__ import annotations

import json

import pytest

from tests.bench.harness import SMOKE, Context, Phase


def rebuilt(worker: str, incidents: int, at: str, end: str = "\n") -> str:
    return json.dumps({"event": "schedule_rebuilt", "incidents": incidents, "worker": worker, "level": "info",
                       "timestamp": f"2026-11-27T10:00:{at}+00:00"}) + end


GC = json.dumps({"event": "gc_frozen", "timestamp": "2026-11-27T10:00:00+00:00"}) + "\n"

# (what it shows, worker-0's log before its mark and after, worker-1's the same, at_least,
#  expected: (incidents together, timestamp of the last line) or None: not ready yet)
ROWS = [
    ("every worker rebuilt, together enough: the sum, at the later line",
     ("", rebuilt("w0", 1500, "01")), ("", rebuilt("w1", 1000, "02")), 2000, (2500, "02")),
    ("each worker's latest line counts (a rebalance halved worker 0's share)",
     ("", rebuilt("w0", 2500, "01") + GC + rebuilt("w0", 1500, "03")), ("", rebuilt("w1", 1000, "02")), 2000,
     (2500, "03")),
    ("a worker that has not rebuilt yet: not ready",
     ("", rebuilt("w0", 2500, "01")), ("", GC), 0, None),
    ("together short of at_least: not ready",
     ("", rebuilt("w0", 900, "01")), ("", rebuilt("w1", 1000, "02")), 2000, None),
    ("a line still being written (no newline yet) is not read",
     ("", rebuilt("w0", 1500, "01")), ("", rebuilt("w1", 1000, "02", end="")), 2000, None),
    ("lines before the mark are a previous life of the worker (before a kill)",
     (rebuilt("w0", 2500, "01"), ""), (rebuilt("w1", 2500, "02"), rebuilt("w1", 2500, "05")), 2000, None),
    ("after the mark the restarted worker's line counts",
     (rebuilt("w0", 9, "01"), rebuilt("w0", 1200, "07")), (rebuilt("w1", 9, "02"), rebuilt("w1", 1300, "06")),
     2500, (2500, "07")),
    ("terminal codes before a JSON line and lines that are not JSON are passed over",
     ("", "\x1b[0mWorker ready\n\x1b[32m" + rebuilt("w0", 1500, "01")), ("", "[2026] faust: starting\n" +
                                                                       rebuilt("w1", 1000, "02")), 2500, (2500, "02")),
]


@pytest.fixture()
def phase(tmp_path) -> Phase:
    return Phase(Context(sizes=SMOKE, smoke=True, work=tmp_path, profile_dir=None), "logs")


@pytest.mark.parametrize("case", ROWS, ids=[row[0] for row in ROWS])
def test_readiness_is_read_from_each_workers_own_log(phase, case):
    _, *logs, at_least, expected = case
    phase.log_dir.mkdir(parents=True)
    for index, (before, _after) in enumerate(logs):
        phase.worker_log(index).write_text(before, encoding="utf-8")
    marks = {index: phase.worker_log(index).stat().st_size for index in range(len(logs))}
    for index, (_before, after) in enumerate(logs):
        with phase.worker_log(index).open("a", encoding="utf-8") as f:
            f.write(after)

    line = phase.rebuilt(marks, at_least)

    if expected is None:
        assert line is None
    else:
        incidents, at = expected
        assert line is not None
        assert (line["incidents"], line["timestamp"]) == (incidents, f"2026-11-27T10:00:{at}+00:00")


def test_the_stack_names_one_log_file_per_process(phase):
    assert [phase.stack.log_path(name).name for name in ("worker-0", "worker-1", "api")] == \
        ["worker-0.log", "worker-1.log", "api.log"]
    assert {phase.worker_log(i).parent for i in range(2)} == {phase.log_dir}
