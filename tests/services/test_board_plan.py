"""The board's header names the plan in force (issue 24 item 3): its stream sends it (`plan`) after the snapshot,
again when a revision is adopted or rolled back while the board is open, and not otherwise; GET /board's HTML
carries it for the first paint. A PlanBook driven directly, as tests/services/test_plan_book.py drives it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from functools import partial

from fastapi.testclient import TestClient

from services.drill_book import DrillBook
from services.plan_book import PlanBook, change_text, plan_texts, with_changes
from services.web.district_map import grid_version
from services.settings import Settings
from services.users import new_token, user_record
from services.view import IncidentView
from services.web import board
from services.web.app import create_app
from tests.services.test_incident_agent import NOW, PLAN
from tests.services.test_plan_book import adoption, revised, revision_dir  # noqa: F401 - the fixtures
from playbooks.plan import DATA_DIR
from topics.models import Role
from topics.plan import SHIPPED

WAIT_S = 5.0


def sent(event) -> tuple[str | None, dict | None]:
    return event.event, json.loads(event.data) if event.data else None


class Client:
    """A board's client of the stream: its next event asked for (`pull`, possibly left pending while the test
    acts), and the stream ended as sse-starlette ends it when the client goes (the pending step cancelled)."""

    def __init__(self, stream) -> None:
        self.stream, self.pending = stream, None

    def pull(self) -> asyncio.Task:
        self.pending = asyncio.ensure_future(anext(self.stream))
        return self.pending

    async def next(self) -> tuple[str | None, dict | None]:
        return sent(await asyncio.wait_for(self.pull(), WAIT_S))

    async def close(self) -> None:
        if self.pending is not None and not self.pending.done():
            self.pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await self.pending
        await self.stream.aclose()


async def test_the_stream_sends_the_plan_at_its_snapshot_again_after_a_switch_and_not_when_nothing_changed(
        revision_dir, revised, monkeypatch):  # noqa: F811
    monkeypatch.setattr(board, "TICK_S", 0.01)  # many ticks in a tenth of a second
    monkeypatch.setattr(board, "COALESCE_S", 0.0)
    view, book = IncidentView(), PlanBook(PLAN)
    shown = partial(board.plan_shown, book, PLAN)
    client = Client(board.events(view, DrillBook(), None, warnings=lambda: [], plan=shown))

    async def quiet_then_a_change() -> str | None:
        """Ticks go by with nothing sent; then a warning moves, and the next event is its change."""
        pending = client.pull()
        await asyncio.sleep(0.1)
        assert not pending.done(), sent(pending.result())
        view.warning_changed("w-1")
        return sent(await asyncio.wait_for(pending, WAIT_S))[0]

    try:
        assert (await client.pull()).retry == board.RECONNECT_MS
        assert (await client.next())[0] == "snapshot"
        kind, body = await client.next()
        assert kind == "plan" and body["plan"] == {"version": PLAN.version, "adoption": None,  # the shipped plan
                                                   "map": grid_version(PLAN)}
        assert await quiet_then_a_change() == "changes"

        first = with_changes(adoption(plan_texts(revision_dir), revised.version, 1), PLAN, revised)
        assert first.changes  # what it changes, kept with it: the notice names them
        pending = client.pull()
        await asyncio.sleep(0.05)
        book.apply(first)
        await book.settle()  # the switch, while the stream waits: it goes out within a tick
        kind, body = sent(await asyncio.wait_for(pending, WAIT_S))
        assert kind == "plan" and body["plan"] == {
            "version": revised.version, "adoption": first.id, "map": grid_version(revised),
            "adopted_at": first.adopted_at.isoformat(),
            "adopted_by": "预案管理科 王某", "reason": "试行修订", "rollback_of": None,
            "changes": [change_text(c) for c in first.changes[:3]], "changes_total": len(first.changes)}
        assert await quiet_then_a_change() == "changes"  # once: not again while it stays in force
        await book.settle()  # nothing new read: no switch, nothing sent
        assert await quiet_then_a_change() == "changes"

        back = adoption(plan_texts(DATA_DIR), PLAN.version, 2, rollback_of=SHIPPED, against=revised.version)
        book.apply(back)
        await book.settle()
        kind, body = await client.next()
        assert kind == "plan" and body["plan"]["version"] == PLAN.version
        assert body["plan"]["adoption"] == back.id and body["plan"]["rollback_of"] == SHIPPED  # a rollback, said so

        for queue in list(view._subscribers):  # the stream fell behind: a fresh snapshot, and the plan with it
            queue.put_nowait(None)
        after = [await client.next() for _ in range(2)]
        assert [k for k, _ in after] == ["snapshot", "plan"] and after[1][1]["plan"]["adoption"] == back.id
    finally:
        await client.close()

    # a board connecting (or reconnecting) now is told the plan in force after its snapshot
    again = Client(board.events(view, DrillBook(), None, plan=shown))
    try:
        events = [await again.next() for _ in range(3)]
        assert [k for k, _ in events] == [None, "snapshot", "plan"] and events[2][1]["plan"]["adoption"] == back.id
    finally:
        await again.close()


async def test_an_incidents_page_stream_carries_no_plan(monkeypatch):
    monkeypatch.setattr(board, "TICK_S", 0.01)
    view, book = IncidentView(), PlanBook(PLAN)
    client = Client(board.events(view, DrillBook(), "some-incident", plan=partial(board.plan_shown, book, PLAN)))
    try:
        assert [(await client.next())[0] for _ in range(2)] == [None, "snapshot"]
        pending = client.pull()
        await asyncio.sleep(0.1)
        assert not pending.done(), sent(pending.result())
    finally:
        await client.close()


def test_the_board_page_carries_the_plan_in_force_for_its_first_paint(tmp_path, revision_dir, revised):  # noqa: F811
    book = PlanBook(PLAN)
    app = create_app(Settings(data_dir=tmp_path, bootstrap_servers="127.0.0.1:1"), plans=book)
    token = new_token()
    app.state.users.apply(user_record("u-viewer", Role.VIEWER, token, now=NOW, by="test"))
    client = TestClient(app, headers={"Authorization": f"Bearer {token}", "Accept": "text/html"})
    page = client.get("/board").text
    assert f'预案版本 <b id="plan-version">{PLAN.version}</b>' in page and "随服务发布的版本" in page
    first = adoption(plan_texts(revision_dir), revised.version, 1)
    book.switch(revised, first)
    page = client.get("/board").text
    assert f'<b id="plan-version">{revised.version}</b>' in page and "随服务发布的版本" not in page
    config = json.loads(re.search(r'<script type="application/json" id="config">(.*?)</script>', page).group(1))
    assert config["plan"] == board.plan_shown(book, PLAN) and config["plan"]["adoption"] == first.id
    # an app given a plan, no book
    assert board.plan_shown(None, PLAN) == {"version": PLAN.version, "adoption": None, "map": grid_version(PLAN)}
