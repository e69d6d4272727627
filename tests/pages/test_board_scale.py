"""The board at thousands of open incidents (issue 21), in Chromium against `yingji run` on a stack of
its own (the session's `service` holds other tests' incidents): N incidents raised through POST
/incidents (tests/e2e/board_seed.py), and the page's figures checked against what the API's read
model says, counted here independently of the page.

N is `--board-incidents` (300 by default, so `make test` stays short; `make board-scale` runs 5000).
Screenshots at 1920×1080 go to screenshots/ (git-ignored): board-0.png, board-50.png, board-N.png,
board-N-filtered.png and board-N-by-street.png.

Only facets that cannot change while the test runs are compared exactly (street, level, grade,
category, type, lead unit): nobody files or regrades here. 已超时 moves with the clock (a young
incident falls due meanwhile), so its count is held between the breached rows the API had before the
page was read and the rows breached or past a due time after."""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from playbooks.plan import load_plan
from tests.conftest import Service, start_service, stop_service, unique_id
from tests.e2e.board_seed import post_all, reports
from tests.pages.test_board import SHOTS, shot, sign_in
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

VIEWPORT = {"width": 1920, "height": 1080}
FIRST = 50  # the board is photographed at 0, at FIRST and at N
STABLE_FACETS = ("level", "grade", "category", "type", "street", "unit")


# --- the stack, the browser context ------------------------------------------------------------------


@pytest.fixture(scope="module")
def scale_service(tmp_path_factory) -> Service:
    """`yingji run` of this module alone, started as the session's `service` is; its warm-up incident
    ended, so the board starts empty."""
    try:
        svc = start_service(tmp_path_factory.mktemp("board-scale"))
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        with svc.client("commander") as c:
            resp = c.post(f"/incidents/{svc.warm_incident}/end", json={
                "authority": "district_committee", "decided_by": "区应急委",
                "ended_at": datetime.now(timezone.utc).isoformat()})
            assert resp.status_code == 202, resp.text
            eventually(lambda: c.get(f"/incidents/{svc.warm_incident}").json()["status"] == "ended",
                       timeout=30, every=0.2, what="the warm-up incident ended")
        yield svc
    finally:
        stop_service(svc)


@pytest.fixture
def wide(browser):
    ctx = browser.new_context(viewport=VIEWPORT, locale="zh-CN", timezone_id="Asia/Shanghai")
    errors: list[str] = []
    ctx.on("weberror", lambda e: errors.append(str(e.error)))
    yield ctx
    ctx.close()
    assert errors == [], f"JavaScript errors on the pages: {errors}"


# --- what the API says, counted here ---------------------------------------------------------------


def all_incidents(client: httpx.Client, known: list[str]) -> list[dict]:
    """Every incident of the read model: GET /incidents keeps its last 5000; the others (known ids not
    among them) one by one."""
    body = client.get("/incidents", params={"limit": 5000}, timeout=120).json()
    items = body["incidents"]
    if body["count"] > len(items):
        have = {i["incident_id"] for i in items}
        items += [client.get(f"/incidents/{i}").json() for i in known if i not in have]
    assert len(items) == body["count"], f"{body['count']} incidents, {len(items)} read"
    return items


def facet_values(inc: dict) -> dict[str, list[str]]:
    """What the board's facets should say an incident has, read from GET /incidents' JSON."""
    dec = inc["decision"]
    street = (inc["report"].get("location") or {}).get("street") or "未明确"
    if dec is None:
        return {"level": ["研判中"], "grade": ["研判中"], "category": ["研判中"], "type": [inc["report"]["type"]],
                "street": [street], "unit": ["研判中"]}
    return {"level": [dec["response_level"]], "grade": [dec["grade"]], "category": [dec["category_name"]],
            "type": [dec["type_name"]], "street": [street], "unit": list(dec["lead_units"]) or ["研判中"]}


def live_open(items: list[dict]) -> list[dict]:
    return [i for i in items if i["status"] != "ended" and not i["drill"]]


def expected_counts(items: list[dict], facet: str, **chosen: str) -> Counter:
    """Per value of `facet`, the open live incidents having it among those matching every `chosen`
    facet but `facet` itself (a facet's own selection never narrows its own counts)."""
    out: Counter = Counter()
    for inc in live_open(items):
        vals = facet_values(inc)
        if all(v in vals[k] for k, v in chosen.items() if k != facet):
            out.update(vals[facet])
    return out


def breached(inc: dict) -> bool:
    return any(o["status"] == "missed" for o in inc["obligations"])


def overdue_at(inc: dict, now: datetime) -> bool:
    pending = [datetime.fromisoformat(o["due_at"]) for o in inc["obligations"] if o["status"] in ("open", "missed")]
    return breached(inc) or (bool(pending) and min(pending) < now)


# --- the page ----------------------------------------------------------------------------------------


def wait_js(page, fn: str, arg=None, *, timeout: float, what):
    """Until the page function `fn(arg)` answers truthy, asked from here: the board's CSP (script-src
    'self') refuses the string evaluation Playwright's wait_for_function polls with."""
    return eventually(lambda: page.evaluate(fn, arg), timeout=timeout, every=0.05, what=what)


def wait_first_rows(page, timeout: float = 60) -> None:
    wait_js(page, "() => performance.getEntriesByName('yj:first-rows').length > 0", timeout=timeout,
            what="the first rows drawn (performance mark yj:first-rows)")


def facet_counts(page) -> dict[str, dict[str, int]]:
    """Every facet's values and counts, those under 展开全部 too (the facets of values seen in the rows
    show their top 10 until it is pressed)."""
    wait_js(page, """() => { const more = [...document.querySelectorAll('#facets button.facet-more')];
      for (const b of more) b.click();
      return more.length === 0; }""", timeout=15, what="every facet 展开全部")
    return page.evaluate("""() => {
      const out = {};
      for (const b of document.querySelectorAll('#facets button.facet-v')) {
        (out[b.dataset.facet] ||= {})[b.dataset.value] = Number(b.querySelector('.n').textContent);
      }
      return out;
    }""")


def shown_count(page) -> int:
    return int(page.locator("#shown-count").inner_text())


def settle(page) -> None:
    """Two frames after the next timer turn: whatever the last click invalidated is drawn."""
    page.evaluate("() => new Promise(r => setTimeout(() => requestAnimationFrame(() => requestAnimationFrame(r)), 50))")


def wait_shown(page, n: int, timeout: float = 15) -> None:
    wait_js(page, "n => Number(document.getElementById('shown-count').textContent) === n", n, timeout=timeout,
            what=lambda _: f"#shown-count {n} (it says {page.locator('#shown-count').inner_text()})")


def drawn_streets(page) -> list[str]:
    return page.evaluate("() => [...document.querySelectorAll('#rows tr.inc')].map(tr => tr.querySelector('td.place .cell > div').textContent)")


def click_facet(page, facet: str, value: str) -> None:
    page.locator(f'#facets button.facet-v[data-facet="{facet}"][data-value="{value}"]').click()


def nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


def map_served(page, api: str) -> bool:
    return page.request.get(api + "/board/map.json").status == 200


def group_headers(page) -> dict[str, int]:
    """Every group header's count: each expanded group collapsed in turn (so all headers fit in the
    window), the list scrolled to its end to be sure."""
    return page.evaluate("""async () => {
      const frame = () => new Promise(r => setTimeout(() => requestAnimationFrame(() => r()), 20));
      for (let i = 0; i < 100; i += 1) {
        const b = document.querySelector('#rows tr.group button.g-toggle[aria-expanded="true"]');
        if (!b) break;
        b.click();
        await frame(); await frame();
      }
      const out = {};
      const read = () => { for (const tr of document.querySelectorAll('#rows tr.group')) out[tr.dataset.group] = Number(tr.querySelector('.g-count').textContent.replace(/\\D/g, '')); };
      read();
      const wrap = document.getElementById('table-wrap');
      wrap.scrollTop = wrap.scrollHeight; await frame(); await frame(); read();
      wrap.scrollTop = 0; await frame();
      return out;
    }""")


# The rows drawn at yj:first-rows (from the stream's first event, before the other rows came) and those
# drawn when every row is in (yj:all-rows), each with the page's clock then.
SCREENS_HOOK = """(() => { const mark = performance.mark.bind(performance);
  const ids = () => [...document.querySelectorAll('#rows tr.inc')].map((tr) => tr.dataset.id);
  performance.mark = (name, ...rest) => {
    const out = mark(name, ...rest);
    const s = window.__yjScreens ||= {};
    if (name === 'yj:first-rows') { s.first = ids(); s.firstAt = Date.now(); s.firstMs = out.startTime; }
    if (name === 'yj:all-rows') setTimeout(() => { s.all = ids(); s.allAt = Date.now(); s.allMs = out.startTime; }, 0);
    return out;
  }; })();"""


def earliest_due(inc: dict) -> float | None:
    dues = [datetime.fromisoformat(o["due_at"]).timestamp() for o in inc["obligations"]
            if o["status"] in ("open", "missed") and o["due_at"]]
    return min(dues) if dues else None


def first_screen_is_the_top(page, items: list[dict]) -> None:
    """Reloaded, the board draws its first screen from the stream's first event: those rows are the top
    of the whole list, in its order, once every row has come. An incident falling due between the two
    moves up by the clock alone: such incidents are left out of both before comparing. The times are
    printed (a timing never decides a test here)."""
    page.add_init_script(SCREENS_HOOK)
    page.reload()
    s = wait_js(page, "() => window.__yjScreens && window.__yjScreens.all ? window.__yjScreens : null", timeout=120,
                what="the first screen and every row drawn after a reload")
    lo, hi = s["firstAt"] / 1000 - 5, s["allAt"] / 1000 + 5
    moving = {i["incident_id"] for i in items if (d := earliest_due(i)) is not None and lo <= d <= hi}
    first = [i for i in s["first"] if i not in moving]
    top = [i for i in s["all"] if i not in moving]
    assert len(s["first"]) >= 10, s["first"]  # a 1080-px screen of rows
    assert first[:len(top)] == top[:len(first)], (first, top)
    print(f"\nreload at {len(live_open(items))} open incidents: first rows {s['firstMs']:.0f} ms, every row {s['allMs']:.0f} ms after "
          f"navigationStart (2 cores shared by broker, workers, API and Chromium; {len(moving)} falling due meanwhile)")


# --- the tests -----------------------------------------------------------------------------------------


def test_the_board_at_n_open_incidents(scale_service, wide, request):
    n = request.config.getoption("--board-incidents")
    assert n > FIRST, "--board-incidents must be above 50: the board is photographed at 0, 50 and N"
    svc = scale_service
    timings: dict[str, float] = {}
    page = wide.new_page()
    sign_in(page, svc, "duty_officer")
    wait_first_rows(page)
    page.locator("#conn[data-state=live]").wait_for(timeout=10_000)
    assert page.locator("#count-live").inner_text() == "0"
    if map_served(page, svc.api):  # the map comes after the first rows: photographed once drawn
        wait_js(page, "() => document.querySelectorAll('#map-cells li').length > 0", timeout=30, what="the map drawn")
        settle(page)
    shot(page, "board-0")

    bodies = reports(load_plan(), n, seed=21, prefix=unique_id("scale"))
    ids: list[str] = []
    with svc.client() as api:
        for upto, name in ((FIRST, "board-50"), (n, f"board-{n}")):
            t = time.monotonic()
            ids += post_all(svc.api, svc.tokens["duty_officer"], bodies[len(ids):upto])
            timings[f"posted ({upto})"] = time.monotonic() - t
            # the API's read model has every one decided (a worker behind says so here, not in a count)
            t = time.monotonic()
            items = eventually(lambda: all_incidents(api, [svc.warm_incident, *ids]),
                               until=lambda got: sum(1 for i in got if i["status"] == "decided") >= len(ids),
                               timeout=60 + n * 0.12, every=2.0,
                               what=lambda got: f"{len(ids)} incidents decided; "
                                                f"{sum(1 for i in got or [] if i['status'] == 'decided')} are")
            timings[f"decided ({upto})"] = time.monotonic() - t
            t = time.monotonic()
            wait_js(page, "n => document.getElementById('count-live').textContent === String(n)", upto, timeout=60,
                    what=f"{upto} live incidents on the page")
            timings[f"on the page ({upto})"] = time.monotonic() - t
            settle(page)
            shot(page, name)
    first_screen_is_the_top(page, items)
    # what a fixed row height hides (printed, not asserted: a finding for the page's layout)
    cut = page.evaluate("""() => { const rows = [...document.querySelectorAll('#rows tr.inc')];
      const hidden = rows.filter(tr => { const o = tr.querySelector('.oblig'); const box = o.getBoundingClientRect();
        return [...o.querySelectorAll('.chip')].some(c => c.getBoundingClientRect().bottom > box.top + o.clientHeight + 1); });
      return [hidden.length, rows.length, hidden.filter(tr => tr.classList.contains('breached')).length]; }""")
    print(f"\nrows drawn with a chip cut off by the row height: {cut[0]} of {cut[1]} ({cut[2]} of them breached)")
    assert len(ids) == n
    opened = live_open(items)
    assert len(opened) == n, f"{len(opened)} open live incidents, {n} raised"

    # every facet that cannot change during the test: the page's counts are the API's
    page_counts = facet_counts(page)
    for facet in STABLE_FACETS:
        want = dict(expected_counts(items, facet))
        got = page_counts.get(facet, {})
        assert nonzero(got) == want, f"facet {facet}: page {nonzero(got)} != API {want}"
    # every street shows, even at 0
    assert set(load_plan().streets) <= set(page_counts["street"])

    # 已超时: between what the API had breached before the page was read and what is breached or past
    # due after (young incidents fall due while the test runs); the page recomputes every 5 s
    with svc.client() as api:
        lower = sum(1 for i in live_open(all_incidents(api, [svc.warm_incident, *ids])) if breached(i))
        page.wait_for_timeout(5500)
        page_overdue = facet_counts(page)["state"].get("overdue", 0)
        after = datetime.now(timezone.utc) + timedelta(seconds=1)
        upper = sum(1 for i in live_open(all_incidents(api, [svc.warm_incident, *ids])) if overdue_at(i, after))
    print(f"\n已超时: page {page_overdue}, API breached before {lower}, breached or past due after {upper}")
    assert lower <= page_overdue <= upper
    assert lower > 0, "the seed's old incidents are breached"
    assert int(page.locator("#sum-breach").inner_text()) >= lower

    # a street: #shown-count narrows to its count, every drawn row is in that street, the URL says so
    streets = expected_counts(items, "street")
    street = max((s for s in streets if s != "未明确"), key=lambda s: (streets[s], s))
    click_facet(page, "street", street)
    wait_shown(page, streets[street])
    settle(page)
    drawn = drawn_streets(page)
    assert drawn and set(drawn) == {street}, drawn
    assert parse_qs(urlparse(page.url).query)["street"] == [street]

    # and a level in it: the two combined; the other facets' counts follow
    levels = expected_counts(items, "level", street=street)
    level = next(lv for lv in ("一级", "二级", "三级") if levels[lv])
    click_facet(page, "level", level)
    want = levels[level]
    wait_shown(page, want)
    settle(page)
    assert set(drawn_streets(page)) == {street}
    assert set(page.evaluate("() => [...document.querySelectorAll('#rows tr.inc td:first-child')].map(td => td.textContent)")) == {f"{level}响应"}
    page_counts = facet_counts(page)
    # the street facet now counts that level in every street; the grade facet, that street and level
    assert nonzero(page_counts["street"]) == dict(expected_counts(items, "street", level=level))
    assert nonzero(page_counts["grade"]) == dict(expected_counts(items, "grade", street=street, level=level))
    assert nonzero(page_counts["level"]) == dict(levels)
    assert page.locator(f'#facets button.facet-v[data-facet="street"][data-value="{street}"]').get_attribute("aria-pressed") == "true"
    shot(page, f"board-{n}-filtered")

    # a reload keeps the view (it is in the URL) and the same figures
    url = page.url
    page.reload()
    wait_first_rows(page)
    wait_shown(page, want)
    settle(page)
    assert page.url == url
    for facet, value in (("street", street), ("level", level)):
        button = page.locator(f'#facets button.facet-v[data-facet="{facet}"][data-value="{value}"]')
        assert button.get_attribute("aria-pressed") == "true", (facet, value)
    again = facet_counts(page)
    assert {k: nonzero(again[k]) for k in STABLE_FACETS} == {k: nonzero(page_counts[k]) for k in STABLE_FACETS}

    # grouped by street, no filter: each group's header counts what the map and the API count
    page.locator("#clear-filters").click()
    wait_shown(page, n)
    page.locator("#group").select_option("street")
    settle(page)
    assert parse_qs(urlparse(page.url).query)["group"] == ["street"]
    shot(page, f"board-{n}-by-street")
    # a person's click on a group's toggle (pointer down and up on the same button) collapses it, the
    # stream busy meanwhile
    first = page.locator("#rows tr.group button.g-toggle").first
    group_id = first.get_attribute("data-group")
    first.click(timeout=10_000)
    toggle = page.locator(f'#rows tr.group button.g-toggle[data-group="{group_id}"]')
    eventually(lambda: toggle.get_attribute("aria-expanded"), until=lambda v: v == "false", timeout=5,
               what=f"group {group_id} collapsed by its toggle")
    headers = group_headers(page)
    assert headers == dict(streets), f"group headers {headers} != API {dict(streets)}"
    if map_served(page, svc.api):
        cells = page.evaluate("() => Object.fromEntries([...document.querySelectorAll('#map-cells li')].map(li => [li.dataset.street, Number(li.dataset.count)]))")
        assert nonzero(cells) == {s: c for s, c in streets.items() if s != "未明确"}, cells
        assert all(headers[s] == cells[s] for s in headers if s != "未明确")
    else:
        print("/board/map.json is not served on this branch: #map-cells not compared")
    page.locator("#group").select_option("")
    settle(page)

    # the search finds one incident by its id
    one = ids[len(ids) // 2]
    page.locator("#q").fill(one)
    wait_shown(page, 1)
    settle(page)
    assert page.evaluate("() => [...document.querySelectorAll('#rows tr.inc')].map(tr => tr.dataset.id)") == [one]
    page.locator("#q").fill("")
    wait_shown(page, n)

    # the window: anywhere in N rows the screen is covered by rows, the end too, with few rows drawn
    at_top = page.evaluate("() => [...document.querySelectorAll('#rows tr.inc')].map(tr => tr.dataset.id)")
    for where in (0.25, 0.5, 0.75, 1.0):
        probe = page.evaluate("""async (where) => {
          const wrap = document.getElementById('table-wrap');
          wrap.scrollTop = (wrap.scrollHeight - wrap.clientHeight) * where;
          await new Promise(r => setTimeout(() => requestAnimationFrame(() => requestAnimationFrame(r)), 30));
          const box = wrap.getBoundingClientRect();
          const hit = (y) => { const el = document.elementFromPoint(box.left + box.width / 2, y); return !!(el && el.closest('tr.inc')); };
          const trs = [...document.querySelectorAll('#rows tr')];
          const last = trs[trs.length - 1].getBoundingClientRect();
          return { trs: trs.length, covered: [box.top + 60, box.top + box.height / 2, box.bottom - 10].map(hit),
                   ids: trs.map(tr => tr.dataset.id), padBottom: document.getElementById('vpad').style.paddingBottom,
                   lastBottom: last.bottom, wrapBottom: box.bottom, atEnd: wrap.scrollTop + wrap.clientHeight >= wrap.scrollHeight - 2 };
        }""", where)
        assert probe["trs"] < 120, probe["trs"]
        assert all(probe["covered"]), (where, probe)
        if where == 1.0:
            assert probe["atEnd"] and probe["padBottom"] == "0px", probe
            assert abs(probe["lastBottom"] - probe["wrapBottom"]) < 80, probe  # the last row is the one in view
            assert not set(probe["ids"]) & set(at_top)
    print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    (SHOTS / f"board-scale-{n}.txt").write_text("".join(f"{k}: {v:.1f} s\n" for k, v in timings.items()))


def test_a_new_breach_shows_within_a_second(scale_service, wide):
    """A report received 9 min 55 s ago: its phone report falls due in about 5 s and nobody files it.
    The board is opened first, on `?q=<its id>` (an incident's id is its report's), and live before the
    report is sent: at N incidents a load takes seconds, and a breach landing before the page holds its
    snapshot would measure the load. The latency is the page's Date.now() at the animation frame in
    which the row's chip first says 超时未报, minus the breach event's recorded_at; printed, and held
    only to a loose 5 s (a timing must not decide a test on a loaded 2-core machine): what is asserted
    is that it shows."""
    svc = scale_service
    late = unique_id("scale-late")
    page = wide.new_page()
    sign_in(page, svc, "duty_officer", f"/board?q={late}")
    wait_first_rows(page)
    page.locator("#conn[data-state=live]").wait_for(timeout=10_000)
    page.evaluate("""(id) => {
      const tick = () => {
        const tr = document.querySelector(`#rows tr.inc[data-id="${CSS.escape(id)}"]`);
        if (tr && [...tr.querySelectorAll('.chip')].some(c => c.textContent.includes('超时未报'))) { window.__breachShownAt = Date.now(); return; }
        requestAnimationFrame(tick);
      };
      tick();
    }""", late)
    received = datetime.now(timezone.utc) - timedelta(minutes=9, seconds=55)
    with svc.client() as api:
        resp = api.post("/incidents", json={"report_id": late, "type": "forest_fire",
                                            "occurred_at": received.isoformat(), "received_at": received.isoformat(),
                                            "location": {"street": "漷县镇"}})
        assert resp.status_code == 202, resp.text
        assert resp.json()["incident_id"] == late
        page.locator(f'#rows tr.inc[data-id="{late}"]').wait_for(timeout=30_000)
        shown_at = wait_js(page, "() => window.__breachShownAt", timeout=60, what="超时未报 on the row") / 1000
        events = eventually(lambda: api.get(f"/incidents/{late}/timeline").json()["events"],
                            until=lambda evs: any(e["kind"] == "breach" for e in evs), timeout=30, every=0.2,
                            retry_on=(httpx.TransportError,),  # a kept-alive connection the API closed meanwhile
                            what="the breach on the timeline")
    breach = next(e for e in events if e["kind"] == "breach" and e.get("obligation") == "phone_report")
    latency = shown_at - datetime.fromisoformat(breach["recorded_at"]).timestamp()
    detection = (datetime.fromisoformat(breach["recorded_at"]) - datetime.fromisoformat(breach["at"])).total_seconds()
    shot(page, "board-breach-shown")
    print(f"\nbreach recorded → 超时未报 on the board: {latency * 1000:.0f} ms (aim < 1000 ms); "
          f"due → recorded (the worker's detection): {detection:.2f} s")
    assert latency < 5.0, f"{latency:.2f} s from the breach's recorded_at to the page"
