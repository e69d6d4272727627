"""/healthz (public readiness) and /metrics (Prometheus, signed in; the duty gauges of the API refreshed at each scrape)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from playbooks.plan import Plan
from services import metrics
from services.duty.book import DutyBook
from services.view import IncidentView
from services.web.auth import require
from services.web.routes.duty import unverified_on_duty
from services.web.state import ClockDep, DutyDep, PlanDep, PublisherDep, UsersDep, ViewDep
from topics.models import UserRecord

router = APIRouter(tags=["health"])


class Health(BaseModel):
    producer: bool
    users_caught_up: bool
    view_caught_up: bool
    duty_caught_up: bool
    plan_caught_up: bool


@router.get("/healthz", response_model=Health, responses={503: {"model": Health, "description": "not ready yet"}})
async def health(request: Request, publisher: PublisherDep, users: UsersDep, view: ViewDep, duty: DutyDep) -> Any:
    """Ready (200) once the broker takes writes and users, incidents, rosters and the plan's adoptions are read
    back (a report is checked against the plan in force); else 503."""
    plans = request.app.state.plans
    body = {"producer": publisher.ready, "users_caught_up": users.caught_up.is_set(),
            "view_caught_up": view.caught_up.is_set(), "duty_caught_up": duty.caught_up.is_set(),
            "plan_caught_up": plans is None or plans.ready.is_set()}
    return JSONResponse(status_code=200 if all(body.values()) else 503, content=body)


@router.get("/metrics", include_in_schema=False)
async def prometheus(plan: PlanDep, clock: ClockDep, duty: DutyDep, view: ViewDep,
                     _: UserRecord = require("metrics.read")) -> Response:
    refresh_duty_gauges(plan, clock.now(), duty, view)
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)


def refresh_duty_gauges(plan: Plan, now: datetime, duty: DutyBook, view: IncidentView) -> None:
    """Who is on duty changes with the clock, not with a record: computed at each scrape, once the
    rosters are read back (before, every unit would look unstaffed and verified)."""
    if not duty.caught_up.is_set():
        return
    counts = unverified_on_duty(duty, plan, view.verified, now)
    metrics.DUTY_UNVERIFIED.clear()  # a unit whose roster went away stops being reported
    for unit, n in counts.items():
        metrics.DUTY_UNVERIFIED.labels(unit=unit).set(n)
