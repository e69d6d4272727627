"""The API process's composition root: `create_app(settings)` wires settings, plan, clock, sealer,
read model, users and the Kafka publisher onto app.state, and mounts one router per resource.
Thin: parse, publish, answer; the decisions are the plan's (playbooks/), made by the worker.

`uvicorn --factory services.web.app:create_app` runs it (services/stack.py). A test passes its own
parts (plan, clock, view, …) and, with no lifespan, needs no broker: a write answers 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from contextlib import asynccontextmanager
from functools import partial
from typing import AsyncIterator, Iterator

import structlog
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.routing import BaseRoute, Match

from playbooks.plan import Plan, load_plan
from services import logs
from services.clock import Clock, WallClock
from services.delivery.tokens import key_from_file
from services.drill_book import DrillBook
from services.ledger_book import CircularBook
from services.plan_book import PlanBook
from services.programme_book import ProgrammeBook
from services.duty.book import DutyBook
from services.warnings.book import WarningBook
from services.privacy import Sealer
from services.settings import Settings, get_settings
from services.users import UserDirectory
from services.view import IncidentView
from services.web.board import TrendCache
from services.web.board import warm as warm_board
from services.web.answers import field_errors, invalid, unavailable
from services.web.district_map import DistrictMap
from services.web.openapi import openapi_with_plan
from services.web.publisher import BrokerUnavailable, Publisher
from services.web.rendering import STATIC_DIR, Pages, VendorFiles, missing_vendor_scripts
from services.web.routes import (
    ack,
    board,
    commands,
    documents,
    drill_programme,
    drills,
    duty,
    duty_pages,
    health,
    incidents,
    ledger,
    pages,
    plan as plan_routes,
    signin,
    users,
    warning_pages,
    warnings,
    whatif,
)

log = structlog.get_logger("yingji", stage="api")

ROUTERS = (incidents.router, commands.router, documents.router, drill_programme.router, drills.router, users.router, health.router,
           signin.router, pages.router, board.router, duty.router, duty_pages.router, ack.router,
           warning_pages.router, warnings.router, ledger.router, plan_routes.router, whatif.router)  # pages first:
# /warnings/list is no warning id; the drill programme before the drills: /drills/programme is no run id


def create_app(settings: Settings | None = None, *, plan: Plan | None = None, clock: Clock | None = None,
               sealer: Sealer | None = None, view: IncidentView | None = None, users: UserDirectory | None = None,
               publisher: Publisher | None = None, duty: DutyBook | None = None,
               ack_key: bytes | None = None, warnings: WarningBook | None = None,
               drills: DrillBook | None = None, circulars: CircularBook | None = None,
               programme: ProgrammeBook | None = None, plans: PlanBook | None = None) -> FastAPI:
    settings = settings or get_settings()
    # the API is its own process (uvicorn --factory): its log lines are scrubbed as the worker's are
    logs.configure(json=settings.log_json, level=settings.log_level, library_level=settings.library_log_level)
    # FastAPIOffline: /docs loads Swagger UI from the package, not from a CDN. No /redoc: ReDoc's
    # bundle still fetches its logo from one.
    app = FastAPIOffline(
        redoc_url=None,
        swagger_ui_parameters={"validatorUrl": None},  # no badge from the online validator either
        title="yingji 应急",
        version="0.1.0",
        description="通州区突发事件总体应急预案（2022）: incidents raised, graded, routed and tracked.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    # the plan in force: the shipped one, then each revision adopted on yingji.plan.adoptions, switched on
    # every replica by its book (issue 24 item 3); a plan given (a test's) stays, unless a book is given too
    if plan is None and plans is None:
        plans = PlanBook(load_plan())
    app.state.plans = plans
    app.state.plan = plan = plans.plan if plans is not None else plan
    if plans is not None:
        plans.listeners.append(partial(_adopt, app))
    app.state.clock = clock or WallClock()
    app.state.sealer = sealer or Sealer.from_file(settings.key_file)
    app.state.view = view or IncidentView()
    app.state.users = users or UserDirectory()
    app.state.duty = duty or DutyBook(app.state.sealer, plan.duty)
    app.state.warnings = warnings or WarningBook()
    app.state.warnings.listeners.append(app.state.view.warning_changed)  # the board shows active warnings live
    # warnings.yaml, ledger.yaml (5.5) and drills.yaml (7.2) are read off the plan in force at each request
    # (services/web/state.py), not copied here: a revision adopted changes them with the rest
    app.state.circulars = circulars or CircularBook()  # every 通报 issued and 整改 reported, from the log
    app.state.programme = programme or ProgrammeBook()  # drills planned, plans revised, improvement items (7.2)
    app.state.publisher = publisher or Publisher(settings.bootstrap)
    # the delivery stage signs the ack links with the same key file (made once, beside the seal key)
    app.state.ack_key = ack_key or key_from_file(settings.ack_key_path)
    # every drill run, from the log; the runs this process runs among them (services/drill_book.py)
    app.state.drills = drills or DrillBook(runner=f"{socket.gethostname()}:{settings.api_port}")
    app.state.drill_tasks = set()
    app.state.pages = Pages()
    app.state.trends = TrendCache(app.state.view)  # the board's trends, computed once for every board watching
    app.state.district_map = DistrictMap(plan)  # the board's map: built on its first request (/board/map.json)
    app.openapi = partial(openapi_with_plan, app)  # type: ignore[method-assign]

    app.middleware("http")(limit_body)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(BrokerUnavailable, broker_unavailable)
    app.add_exception_handler(StarletteHTTPException, http_error)
    # before /static, which would take /static/vendor/… too; the files come from `make web-assets`
    app.mount("/static/vendor", VendorFiles(settings.vendor_dir), name="vendor")
    if missing := missing_vendor_scripts(settings.vendor_dir):
        log.warning("web_assets_missing", missing=missing, directory=str(settings.vendor_dir),
                    fix="run `make web-assets`: the board's map needs them, /static/vendor/ answers 404 meanwhile")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for router in ROUTERS:
        app.include_router(router)
    return app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Connect to the broker and read users and incidents back, in the background: /healthz says
    when all three are there."""
    state = app.state
    tasks = [
        asyncio.create_task(state.publisher.start()),
        asyncio.create_task(state.view.follow(state.settings.bootstrap)),
        asyncio.create_task(warm_board(state.view)),  # the board's rows made once the view is read back
        asyncio.create_task(state.users.follow(state.settings.bootstrap)),
        asyncio.create_task(state.duty.follow(state.settings.bootstrap)),
        asyncio.create_task(state.warnings.follow(state.settings.bootstrap)),
        asyncio.create_task(state.drills.follow(state.settings.bootstrap)),
        asyncio.create_task(state.circulars.follow(state.settings.bootstrap)),
        asyncio.create_task(state.programme.follow(state.settings.bootstrap)),
    ]
    if state.plans is not None:
        tasks.append(asyncio.create_task(state.plans.follow(state.settings.bootstrap)))
    try:
        yield
    finally:
        for task in [*tasks, *state.drill_tasks]:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await state.publisher.stop()


def _adopt(app: FastAPI, plan: Plan, adoption: object) -> None:  # noqa: ARG001 - PlanBook's listener signature
    """A revision read from the log: what the routes read as the plan (PlanDep, and the warnings', ledger's and
    drills' files off it) from the next request on; and what was made from the plan before: the duty book's
    rules (duty.yaml), the board's map (only when the streets changed: it costs a read of a 10 MB file) and
    /openapi.json, made again with the revision's types, streets and units on its next request."""
    app.state.plan = plan
    app.state.duty.use(plan.duty)
    app.state.district_map = app.state.district_map.of(plan)
    app.openapi_schema = None


async def limit_body(request: Request, call_next) -> Response:
    settings = request.app.state.settings
    # a 值班表 of many units and months is larger than any JSON body the API takes
    # and a plan revision's YAML files for a what-if or an adoption (command.yaml alone is 34 KB)
    limit = (settings.max_upload_bytes if request.url.path in ("/rosters", "/whatif", "/plan/adoptions")
             else settings.max_body_bytes)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return JSONResponse(status_code=413, content={"error": f"body larger than {limit} bytes"})
    return await call_next(request)


async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    return invalid(field_errors(exc.errors()))


async def broker_unavailable(_: Request, exc: BrokerUnavailable) -> JSONResponse:
    return unavailable(exc.reason)


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """FastAPI's answer, except: a body that cannot be read at all (not UTF-8, a broken multipart
    form) is a 422 naming the body, as a body that is not JSON is; and a 405 lists every method of the path in Allow (Starlette
    lists only the first route that matched the path, so GET /incidents hid POST /incidents)."""
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        return invalid([{"field": "(body)", "message": "the body is not UTF-8 text"}])
    if exc.status_code == 400 and (isinstance(exc.__context__, MultiPartException)
                                   or exc.detail == "There was an error parsing the body"):
        # a multipart form (a 值班表's upload) that cannot be parsed: refused naming the body, as bad JSON is
        return invalid([{"field": "(body)", "message": "the body is not a readable form (multipart/form-data)"}])
    if exc.status_code == 405:
        allowed = sorted({method for route in _routes(request.app.router.routes)
                          if route.matches(request.scope)[0] is Match.PARTIAL
                          for method in (getattr(route, "methods", None) or ())})
        exc = StarletteHTTPException(405, exc.detail, headers={"Allow": ", ".join(allowed)})
    return await http_exception_handler(request, exc)


def _routes(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    """The app's routes, those of included routers too (FastAPI keeps an included router as one entry)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _routes(inner.routes)
        else:
            yield route
