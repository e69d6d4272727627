"""/healthz (public readiness) and /metrics (Prometheus, signed in)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from services import metrics
from services.web.auth import require
from services.web.state import DutyDep, PublisherDep, UsersDep, ViewDep
from topics.models import UserRecord

router = APIRouter(tags=["health"])


class Health(BaseModel):
    producer: bool
    users_caught_up: bool
    view_caught_up: bool
    duty_caught_up: bool


@router.get("/healthz", response_model=Health, responses={503: {"model": Health, "description": "not ready yet"}})
async def health(publisher: PublisherDep, users: UsersDep, view: ViewDep, duty: DutyDep) -> Any:
    """Ready (200) once the broker takes writes and users, incidents and rosters are read back; else 503."""
    body = {"producer": publisher.ready, "users_caught_up": users.caught_up.is_set(),
            "view_caught_up": view.caught_up.is_set(), "duty_caught_up": duty.caught_up.is_set()}
    return JSONResponse(status_code=200 if all(body.values()) else 503, content=body)


@router.get("/metrics", include_in_schema=False)
async def prometheus(_: UserRecord = require("metrics.read")) -> Response:
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)
