"""`make test` as two pytest processes side by side (two lanes), each with its own session stack.

Why: on two cores one pytest process kept 0.81 of a core busy on average (1,006 s of CPU in 1,239 s of
make test, stop 33): most end-to-end tests wait (a group's session timeout, a broker's restart, a timer
falling due) while a core idles. Lane A takes the long modules that start their own stacks and the
OpenAPI contract run; lane B everything else, and any module added later unless it is named here.

Each lane is an ordinary `pytest -q` (the extra arguments given to this module go to both); lane B's
output is shown as it runs, lane A's after it, and the exit status is the first failing lane's.
Ctrl-C reaches both (one process group).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lane A: about half of make test's wall time on one lane (durations of stop 33's profile, loaded): the
# contract fuzz run (~240 s), the partition migration (~75 s), and the modules that start stacks, brokers
# or clusters of their own (~360 s); lane B ended 110 s before lane A with these and the API replicas and
# delivery faults modules (~40 s) in lane A, so those two went to lane B.
LANE_A = (
    "tests/e2e/test_fuzz.py",
    "tests/e2e/test_migrate_partitions.py",
    "tests/e2e/test_standby.py",
    "tests/e2e/test_faults_cluster.py",
    "tests/e2e/test_standby_tables.py",
    "tests/e2e/test_restart.py",
    "tests/e2e/test_broker.py",
    "tests/e2e/test_faults.py",
    "tests/e2e/test_watchdog.py",
    # the nodes starting on a third of the CPU (the class archive) and the books' unknown ids answered at once
    # took lane A to 453 s and lane B to 697 s (fresh clone, 1f17d09's parent): these two moved across (~150 s)
    "tests/pages/test_board_scale.py",
    "tests/e2e/test_delivery.py",
    # stop 34's tests (the what-if page's, the board's plan) took lane B to 705 s beside lane A's 612 s (fresh clone,
    # c4c37ce; --durations: lane B 673 s, lane A 551 s): the month of duty (~50 s) moved across
    "tests/e2e/test_duty.py",
)


def commands(extra: list[str]) -> tuple[list[str], list[str]]:
    missing = [f for f in LANE_A if not (ROOT / f).is_file()]
    if missing:  # a renamed module would otherwise run in neither lane
        raise SystemExit(f"tests/lanes.py: LANE_A names files that do not exist: {missing}")
    pytest = [sys.executable, "-m", "pytest", "-q", *extra]
    lane_a = [*pytest, "-p", "no:cacheprovider", *LANE_A]
    lane_b = [*pytest, *(f"--ignore={f}" for f in LANE_A)]
    return lane_a, lane_b


def main(argv: list[str]) -> int:
    lane_a, lane_b = commands(argv)
    started = time.monotonic()
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as out_a:
        a = subprocess.Popen(lane_a, cwd=ROOT, stdout=out_a, stderr=subprocess.STDOUT, env=os.environ.copy())
        try:
            rc_b = subprocess.call(lane_b, cwd=ROOT)
            b_done = time.monotonic() - started
            rc_a = a.wait()
        except BaseException:
            a.terminate()
            a.wait()
            raise
        a_done = time.monotonic() - started
        out_a.seek(0)
        print(f"\n===== lane A ({len(LANE_A)} modules beside the rest) =====", flush=True)
        sys.stdout.write(out_a.read())
    print(f"\nlanes: B (the rest) ended after {b_done:.0f} s with {rc_b}; A ended after {a_done:.0f} s with {rc_a}",
          flush=True)
    return rc_b or rc_a


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
