"""Phase `board` (issue 21): the board page at size, in Chromium (Debian's, driven by Playwright) against
`yingji run` (started as the e2e tests start it: tests/conftest.py start_service) on a local Kafka.

`board_incidents` incidents are raised through POST /incidents (tests/e2e/board_seed.py) and decided by
the worker; then:

- snapshot: the bytes of the board stream's first event (`snapshot`: the first screen of rows, the
  feed, the warnings) and of the whole snapshot (with the `rows` events of every other open incident),
  as sent, no compression on the stream; and the seconds from the request to each;
- the page: the bytes of GET /board's HTML (its first screen of rows drawn inline:
  services/web/first_screen.py) and the seconds to receive it;
- first paint: navigationStart → the first row painted (Chromium's Element Timing of the inline first
  row, `elementtiming="yj-first-row"`: its renderTime), the median of `board_loads` loads; beside it the
  first contentful paint (Paint Timing), → `yj:first-rows` (the page's script has taken the drawn rows
  over: countdowns ticking, clicks answered) and → `yj:all-rows` (every row in, counted and drawn:
  the facets, the tiles, the map's figures);
- change → screen: `board_changes` new incidents, one at a time, each with an id of its own typed
  into the search box first; from the API's 202 to the animation frame in which the row is in the
  table (p50/p95; the API hands a report to the board's stream as it answers, so this is the API's
  stream, the page's coalescing and its drawing), and to the frame in which its decision (the
  response level) is shown (through the broker and the worker: `decided_to_screen`).
  Meanwhile a steady background of changes: phone / written / detailed reports filed on the seeded
  incidents at `board_background_rate` a second from a thread (the rate reached is in the row);
- main thread: the share of a 10 s window (3 s in --smoke) the unfiltered board's main thread spends
  in long tasks (over 50 ms) while that background streams in.

Two cores are shared by the broker, the worker, the delivery stage, the API, Chromium and this load
generator: every row says so. Run alone: `python -m tests.bench --only board [--smoke]` (`make bench-board`).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import httpx

from playbooks.plan import load_plan
from tests.bench.harness import Context, Row, percentile, say
from tests.conftest import Service, start_service, stop_service
from tests.e2e.board_seed import post_all, reports
from tests.waiting import eventually

SHARED = "2 cores shared by broker, worker, delivery stage, API, Chromium and load generator"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--lang=zh-CN"]
VIEWPORT = {"width": 1920, "height": 1080}
CHANGE_TYPES = ("燃气事故", "森林火灾", "水灾", "火灾事故", "道路交通事故")


def decided_count(api: httpx.Client, limit: int) -> int:
    body = api.get("/incidents", params={"limit": min(5000, limit)}, timeout=120).json()
    return sum(1 for i in body["incidents"] if i["status"] in ("decided", "ended"))


def page_bytes(svc: Service) -> tuple[int, float]:
    """GET /board's HTML as sent (its inline first screen of rows, for the default view): bytes, seconds."""
    start = time.monotonic()
    resp = httpx.get(svc.api + "/board", headers={"Accept": "text/html", "Authorization": f"Bearer {svc.tokens['viewer']}"},
                     timeout=60)
    resp.raise_for_status()
    return len(resp.content), time.monotonic() - start


def snapshot_bytes(svc: Service) -> tuple[int, float, int, float]:
    """The snapshot as sent (UTF-8 bytes of the events' data) for the page's default view: its first
    event's, seconds from the request to its end; the whole snapshot's (the `rows` events up to the one
    with `more` 0), seconds to its end."""
    headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {svc.tokens['viewer']}"}
    start = time.monotonic()
    first = first_s = total = 0
    kind, data = None, []
    with httpx.stream("GET", svc.api + "/board/stream?view=live", headers=headers, timeout=120) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if line.startswith("event:"):
                kind, data = line[6:].strip(), []
            elif kind in ("snapshot", "rows") and line.startswith("data:"):
                data.append(line[5:].lstrip())
            elif kind in ("snapshot", "rows") and line == "":
                text = "\n".join(data)  # a multi-line payload's newlines count
                total += len(text.encode())
                if kind == "snapshot":
                    first, first_s = total, time.monotonic() - start
                if not json.loads(text).get("more"):
                    return first, first_s, total, time.monotonic() - start
                kind = None
    raise RuntimeError("the board stream ended before its snapshot")


class Background:
    """Reports filed on the seeded incidents at `rate` a second, until stopped: each is a change of a row
    the board holds (a chip met or late). Paced from a thread of its own running an event loop, up to
    IN_FLIGHT posts at once, so a slow answer does not lower the rate offered."""

    KINDS = ("phone_report", "written_report", "detailed_report")
    IN_FLIGHT = 16

    def __init__(self, svc: Service, incidents: list[str], rate: float) -> None:
        self.svc, self.rate = svc, rate
        self.todo = [(i, k) for k in self.KINDS for i in incidents]
        self.sent = self.failed = self.offered = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self.run()), daemon=True)
        self.elapsed = 0.0

    async def run(self) -> None:
        gate = asyncio.Semaphore(self.IN_FLIGHT)
        headers = {"Authorization": f"Bearer {self.svc.tokens['duty_officer']}"}
        async with httpx.AsyncClient(base_url=self.svc.api, headers=headers, timeout=30) as api:
            async def one(incident: str, kind: str) -> None:
                try:
                    resp = await api.post(f"/incidents/{incident}/reports", json={
                        "kind": kind, "unit_id": "district_emergency_bureau",
                        "filed_at": datetime.now(timezone.utc).isoformat(), "filed_by": "压测值班员"})
                    ok = resp.status_code == 202
                except httpx.HTTPError:
                    ok = False
                finally:
                    gate.release()
                self.sent += ok
                self.failed += not ok

            start = time.monotonic()
            tasks = []
            for n, (incident, kind) in enumerate(self.todo):
                wait = start + n / self.rate - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if self.stop.is_set():
                    break
                await gate.acquire()
                tasks.append(asyncio.create_task(one(incident, kind)))
            self.elapsed = time.monotonic() - start
            self.offered = len(tasks)
            await asyncio.gather(*tasks)

    def __enter__(self) -> "Background":
        if self.rate > 0:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=60)

    @property
    def achieved(self) -> float:
        """Posts a second offered while it ran."""
        return self.offered / self.elapsed if self.elapsed else 0.0


def wait_page(page, fn: str, arg: Any = None, *, timeout: float, what: str) -> Any:
    """Until the page function answers truthy, polled from here (the board's CSP refuses the string
    evaluation of Playwright's wait_for_function)."""
    return eventually(lambda: page.evaluate(fn, arg), timeout=timeout, every=0.02, what=what)


# at document start, before anything paints: the first contentful paint and the inline first row's paint
PAINT_WATCH = """(() => { const seen = window.__yjPaint = { fcp: null, row: null };
  new PerformanceObserver((list) => { for (const e of list.getEntries()) if (e.name === 'first-contentful-paint') seen.fcp = e.startTime; })
    .observe({ type: 'paint', buffered: true });
  new PerformanceObserver((list) => { for (const e of list.getEntries()) if (e.identifier === 'yj-first-row') seen.row = e.renderTime || e.loadTime; })
    .observe({ type: 'element', buffered: true }); })();"""
PAINTED = "() => window.__yjPaint && window.__yjPaint.fcp !== null && window.__yjPaint.row !== null ? window.__yjPaint : null"
LONG_TASKS = """() => { const o = new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__yjLong.ms += e.duration; });
  window.__yjLong = { ms: 0, o }; o.observe({ type: 'longtask' }); }"""
FIRST_ROWS = "() => { const m = performance.getEntriesByName('yj:first-rows')[0]; return m ? m.startTime : null; }"
ALL_ROWS = "() => { const m = performance.getEntriesByName('yj:all-rows')[0]; return m ? m.startTime : null; }"
# where a load's time went: the HTML asked for and its last byte in (the server ranks and draws the first
# screen meanwhile), the stream opened (the page's script ran), its first event came
MARKS = """() => { const nav = performance.getEntriesByType('navigation')[0];
  return { request: Math.round(nav.requestStart), html: Math.round(nav.responseEnd),
    ...Object.fromEntries(['yj:connect', 'yj:snapshot'].map((n) => {
      const m = performance.getEntriesByName(n)[0]; return [n.slice(3), m ? Math.round(m.startTime) : null]; })) }; }"""
WATCH = """(id) => {
  window.__yj = window.__yj || {};
  const seen = window.__yj[id] = { row: null, level: null };
  const tick = () => {
    const tr = document.querySelector(`#rows tr.inc[data-id="${CSS.escape(id)}"]`);
    if (tr && seen.row === null) seen.row = Date.now();
    if (tr && seen.level === null && /[一二三]级响应/.test(tr.querySelector('td').textContent)) seen.level = Date.now();
    if (seen.row === null || seen.level === null) requestAnimationFrame(tick);
  };
  tick();
}"""


def measure(ctx: Context) -> None:
    from playwright.sync_api import sync_playwright

    sizes = ctx.sizes
    n = sizes.board_incidents
    data = ctx.work / f"board-{uuid.uuid4().hex[:6]}"
    data.mkdir()
    t = time.monotonic()
    svc = start_service(data)
    say(f"board: yingji run up in {time.monotonic() - t:.1f} s")
    try:
        t = time.monotonic()
        bodies = reports(load_plan(), n, seed=21, prefix=f"bb-{uuid.uuid4().hex[:6]}")
        ids = post_all(svc.api, svc.tokens["duty_officer"], bodies)
        posted_s = time.monotonic() - t
        with svc.client() as api:
            eventually(lambda: decided_count(api, n + 1), until=lambda k: k >= n, timeout=120 + n * 0.2, every=2,
                       what=f"{n} incidents decided")
        seeded_s = time.monotonic() - t
        say(f"board: {n} incidents posted in {posted_s:.1f} s, decided after {seeded_s:.1f} s")
        first_size, first_s, size, snapshot_s = snapshot_bytes(svc)
        html_size, html_s = page_bytes(svc)
        common = {"incidents": n, "open_incidents": n, "viewport": "1920x1080", "browser": "Debian chromium, headless",
                  "stack": "yingji run (broker, worker, delivery stage, sinks, API)", "machine": SHARED}

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(viewport=VIEWPORT, locale="zh-CN", timezone_id="Asia/Shanghai")
                context.add_cookies([{"name": "yingji_token", "value": svc.tokens["duty_officer"], "url": svc.api}])
                context.add_init_script(PAINT_WATCH)
                page = context.new_page()
                paints, fcps, lives, wholes, marks, loads_avg = [], [], [], [], [], []
                for _ in range(sizes.board_loads):
                    page.goto(svc.api + "/board")
                    painted = wait_page(page, PAINTED, timeout=120, what="the first contentful paint and the first row painted")
                    paints.append(painted["row"])
                    fcps.append(painted["fcp"])
                    lives.append(wait_page(page, FIRST_ROWS, timeout=120, what="the first rows taken over by the script"))
                    wholes.append(wait_page(page, ALL_ROWS, timeout=120, what="every row drawn"))
                    marks.append(page.evaluate(MARKS))
                    loads_avg.append(os.getloadavg()[0])  # the machine is shared: each figure with its load
                wait_page(page, "n => Number(document.getElementById('count-live').textContent) >= n", n,
                          timeout=60, what=f"{n} incidents on the board")  # and start_service's warm-up

                rows_ms, decided_ms = [], []
                with Background(svc, ids, sizes.board_background_rate) as background, svc.client() as api:
                    # how much of the page's main thread the stream's changes take, every row in view
                    busy_window = 3.0 if ctx.smoke else 10.0
                    page.evaluate(LONG_TASKS)
                    time.sleep(busy_window)
                    busy = page.evaluate("() => { window.__yjLong.o.disconnect(); return window.__yjLong.ms; }")
                    for i in range(sizes.board_changes):
                        rid = f"chg-{uuid.uuid4().hex[:10]}"
                        page.locator("#q").fill(rid)
                        wait_page(page, "() => document.getElementById('shown-count').textContent === '0' && location.search.includes('q=')",
                                  timeout=10, what="the search applied")
                        page.evaluate(WATCH, rid)
                        now = datetime.now(timezone.utc)
                        resp = api.post("/incidents", json={
                            "report_id": rid, "type": CHANGE_TYPES[i % len(CHANGE_TYPES)],
                            "occurred_at": now.isoformat(), "received_at": now.isoformat(),
                            "location": {"street": sorted(load_plan().streets)[i % 22]}})
                        answered = time.time()
                        if resp.status_code != 202:
                            raise RuntimeError(f"POST /incidents: {resp.status_code} {resp.text}")
                        seen = wait_page(page, "id => { const s = window.__yj[id]; return s.row !== null && s.level !== null ? s : null; }",
                                         rid, timeout=60, what=f"incident {rid} and its decision on the board")
                        rows_ms.append(seen["row"] - answered * 1000)
                        decided_ms.append(seen["level"] - answered * 1000)
                browser_version = browser.version
            finally:
                browser.close()
        load = {"background": f"reports filed on the seeded incidents, {background.achieved:.0f}/s offered "
                              f"(asked {sizes.board_background_rate:.0f}/s; {background.sent} sent, "
                              f"{background.failed} refused)", "changes": len(rows_ms), "chromium": browser_version}
        loaded = f"{SHARED}; meanwhile {background.achieved:.0f} reports/s filed"
        ctx.rows += [
            Row("board.first_event_bytes", first_size, "bytes", "", None, {
                **common, "what": "the first event of GET /board/stream?view=live: the first screen of rows (uncompressed)",
                "received_s": round(first_s, 2)}, note=SHARED),
            Row("board.snapshot_bytes", size, "bytes", "", None, {
                **common, "what": "the whole snapshot of GET /board/stream: its first event and the `rows` events (uncompressed)",
                "received_s": round(snapshot_s, 2)}, note=SHARED),
            Row("board.page_bytes", html_size, "bytes", "", None, {
                **common, "what": "GET /board's HTML with its first screen of rows inline (uncompressed)",
                "received_s": round(html_s, 2)}, note=SHARED),
            Row("board.first_paint_ms", statistics.median(paints), "ms", "<= 1000", statistics.median(paints) <= 1000, {
                **common, "loads": [round(x) for x in paints], "load_average_1min": [round(x, 1) for x in loads_avg],
                "html_requested_ms": [m["request"] for m in marks], "html_received_ms": [m["html"] for m in marks],
                "what": "navigationStart → the first row painted (Element Timing renderTime of the inline first row), "
                        "median of the loads"}, note=SHARED),
            Row("board.first_contentful_paint_ms", statistics.median(fcps), "ms", "", None, {
                **common, "loads": [round(x) for x in fcps],
                "what": "navigationStart → first-contentful-paint (Paint Timing), median of the loads"}, note=SHARED),
            Row("board.first_rows_live_ms", statistics.median(lives), "ms", "", None, {
                **common, "loads": [round(x) for x in lives], "stream_opened_ms": [m["connect"] for m in marks],
                "first_event_ms": [m["snapshot"] for m in marks],
                "what": "navigationStart → performance mark yj:first-rows (the script has taken the drawn rows over), "
                        "median of the loads"}, note=SHARED),
            Row("board.all_rows_ms", statistics.median(wholes), "ms", "", None, {
                **common, "loads": [round(x) for x in wholes],
                "what": "navigationStart → performance mark yj:all-rows (every row in, counted and drawn), median of the loads"},
                note=SHARED),
            Row("board.main_thread_long_tasks", 100 * busy / (busy_window * 1000), "%", "", None, {
                **common, **load, "window_s": busy_window, "long_task_ms": round(busy),
                "what": "the unfiltered board's main thread in long tasks (> 50 ms, PerformanceObserver 'longtask') "
                        "while the background changes stream in"}, note=loaded),
            Row("board.change_to_screen_p50", percentile(rows_ms, 50), "ms", "", None, {
                **common, **load, "what": "the API's 202 for a new incident → the animation frame its row is in the table"},
                note=loaded),
            Row("board.change_to_screen_p95", percentile(rows_ms, 95), "ms", "<= 1000", percentile(rows_ms, 95) <= 1000, {
                **common, **load, "max_ms": round(max(rows_ms)),
                "what": "the API's 202 for a new incident → the animation frame its row is in the table"}, note=loaded),
            Row("board.decided_to_screen_p50", percentile(decided_ms, 50), "ms", "", None, {
                **common, **load, "what": "the API's 202 → the frame its response level (the worker's decision) is shown"},
                note=loaded),
            Row("board.decided_to_screen_p95", percentile(decided_ms, 95), "ms", "", None, {
                **common, **load, "max_ms": round(max(decided_ms)),
                "what": "the API's 202 → the frame its response level (the worker's decision) is shown"}, note=loaded),
        ]
        say(f"board: page {html_size:,} B in {html_s:.2f} s, first event {first_size:,} B, snapshot {size:,} B; "
            f"first row painted {json.dumps([round(x) for x in paints])} ms (first contentful paint "
            f"{json.dumps([round(x) for x in fcps])} ms), taken over by the script {json.dumps([round(x) for x in lives])} ms, "
            f"every row {json.dumps([round(x) for x in wholes])} ms (load average {json.dumps([round(x, 1) for x in loads_avg])}); "
            f"change → screen p50 {percentile(rows_ms, 50):.0f} ms p95 {percentile(rows_ms, 95):.0f} ms ({SHARED})")
    finally:
        stop_service(svc)
