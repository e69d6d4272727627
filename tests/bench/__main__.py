"""Benchmarks (issue 8): the engine, the pipeline, deadlines, recovery and drills, each beside its
target, printed as one table and written as JSON with the machine and the exact settings.

    python -m tests.bench [--smoke] [--only NAME ...] [--size NAME=VALUE] [--out FILE] [--profile DIR]

Kafka phases each start a fresh local Apache Kafka (LocalStack: temporary data dir, free loopback
ports, an app id of their own) and the real workers (`python -m services.cli worker`). Baselines run
in the same phase on the same broker. Sizes are bounded: nothing here offers load to anything but
127.0.0.1, and every wait has a deadline. A missed target is printed as missed; a phase that could
not measure its figure prints none and the command exits 1.

The harness (tests/bench/harness.py) and one module per phase: engine.py, pipeline.py (with its bare
baselines), deadlines.py, recovery.py (both filled by seeding.py), drills.py, duty.py, delivery.py,
board_page.py (the board page in Chromium).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from services.settings import REPO_ROOT
from tests.bench import board_page, deadlines, delivery, drills, duty, engine, pipeline, recovery, whatif
from tests.bench.harness import FULL, NAMES, SMOKE, Context, Row, Sizes, machine, now_utc, render, say

PHASES: dict[str, Callable[[Context], None]] = {
    "engine": engine.measure, "pipeline": pipeline.measure, "deadlines": deadlines.measure,
    "recovery": recovery.measure, "drills": drills.measure, "duty": duty.measure,
    "delivery": delivery.measure, "board": board_page.measure, "whatif": whatif.measure,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes: the harness in about a minute")
    parser.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME", help=f"some of: {', '.join(NAMES)}")
    parser.add_argument("--size", action="append", default=[], metavar="NAME=VALUE",
                        help=f"override one size, e.g. pipeline_incidents=5000 (of: {', '.join(Sizes.__dataclass_fields__)})")
    parser.add_argument("--out", type=Path, help="JSON file (default bench-results/bench-<timestamp>.json)")
    parser.add_argument("--seed", choices=("changelog", "produce"), default="changelog",
                        help="how deadlines/recovery fill the worker: its table's changelog (default) or "
                             "the reports through the worker (slow)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy raw stacks of the worker per Kafka phase, cProfile of engine and drills")
    parser.add_argument("--serve-baseline", choices=sorted(pipeline.BASELINE_TOPICS), help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--dst", help=argparse.SUPPRESS)
    parser.add_argument("--app-id", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_baseline == "aiokafka":
        asyncio.run(pipeline.serve_aiokafka(args.bootstrap, args.src, args.dst, args.app_id))
        return 0
    if args.serve_baseline == "faust":
        pipeline.serve_faust(args.bootstrap, args.src, args.dst, args.app_id)
        return 0

    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so every phase stops its broker and worker.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = now_utc()
    out = args.out or REPO_ROOT / "bench-results" / f"bench-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    names = [n for n in NAMES if not args.only or n in args.only]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    failures: dict[str, str] = {}
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="yingji-bench-") as work:
        sizes = SMOKE if args.smoke else FULL
        for item in args.size:
            name, _, value = item.partition("=")
            sizes = dataclasses.replace(sizes, **{name: type(getattr(sizes, name))(value)})
        ctx = Context(sizes=sizes, smoke=args.smoke, work=Path(work), seed=args.seed,
                      profile_dir=args.profile.resolve() if args.profile else None)
        for name in names:
            say(f"{name} …")
            t = time.monotonic()
            try:
                PHASES[name](ctx)
            except Exception as exc:  # noqa: BLE001 - one phase failing still reports the others
                failures[name] = f"{type(exc).__name__}: {exc}"
                say(f"{name} failed: {failures[name]}")
                ctx.rows.append(Row(f"{name}.failed", None, "-", note=failures[name]))
            timings[name] = round(time.monotonic() - t, 1)
    table = render(ctx.rows)
    print(table)
    doc = {
        "command": " ".join(["python -m tests.bench", *(argv if argv is not None else sys.argv[1:])]),
        "mode": "smoke" if args.smoke else "full", "started_at": started.isoformat(),
        "finished_at": now_utc().isoformat(), "machine": machine(), "sizes": asdict(ctx.sizes),
        "phase_wall_s": timings, "failures": failures,
        "results": [asdict(r) for r in ctx.rows], "table": table,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\n{os.cpu_count()} cores · Python {doc['machine']['python']} · Kafka {doc['machine']['kafka']} · "
          f"faust-streaming {doc['machine']['faust-streaming']} · results: {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
