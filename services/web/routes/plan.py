"""GET /plan: the plan version in force on this replica and every revision adopted or rolled back (issue 24
item 3, 7.1.5), as followed from yingji.plan.adoptions (services/plan_book.py). Adopting is the office's, at
the terminal: `yingji plan adopt` (after its what-if) and `yingji plan rollback`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from services.web.answers import responses
from services.web.auth import require
from services.web.state import PlanDep
from topics.models import UserRecord

router = APIRouter(tags=["plan"])


@router.get("/plan", responses=responses(401, 403))
async def plan_in_force(request: Request, plan: PlanDep, _: UserRecord = require("plan.read")) -> dict[str, Any]:
    book = request.app.state.plans
    current = book.current if book is not None else None
    return {
        "version": plan.version,
        "adoption": current.id if current is not None else None,  # None: the plan shipped with the service
        "shipped_version": book.shipped.version if book is not None else plan.version,
        "caught_up": book.ready.is_set() if book is not None else True,
        "history": book.history() if book is not None else [],
    }
