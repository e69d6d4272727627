"""/users: add a user (their token is in this answer only) and revoke one."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter, HTTPException

from services.users import new_token, user_record
from services.web.answers import conflict, responses
from services.web.auth import require
from services.web.routes.params import UserNameParam
from services.web.state import ClockDep, PublisherDep, UsersDep
from topics.catalog import USERS
from topics.models import Role, UserRecord
from topics.requests import NewUserRequest

log = structlog.get_logger("yingji", stage="api")
router = APIRouter(prefix="/users", tags=["users"])


@router.post("", status_code=201, responses=responses(401, 403, 409, 413, 422, 503))
async def add_user(req: NewUserRequest, users: UsersDep, clock: ClockDep, publisher: PublisherDep,
                   admin: UserRecord = require("users.manage")) -> Any:
    """A new user; the token is shown in this answer only."""
    await users.progress.read_to_end()  # made on another replica a moment ago: known here too
    existing = users.by_name.get(req.name)
    if existing is not None and not existing.revoked:
        # re-adding would silently replace a person's token and role: revoke first, on purpose
        return conflict("name", f"{req.name!r} is a user already; revoke it first for a new token or role")
    token = new_token()
    rec = user_record(req.name, req.role, token, now=clock.now(), by=admin.name)
    await publisher.send(USERS.name, rec.name, rec, what="the user")
    users.apply(rec)
    log.info("user_added", user=req.name, role=req.role.value, by=admin.name)
    return {"name": req.name, "role": req.role.value, "token": token}


@router.delete("/{name}", status_code=200, responses=responses(401, 403, 404, 409, 503))
async def revoke_user(name: UserNameParam, users: UsersDep, clock: ClockDep, publisher: PublisherDep,
                      admin: UserRecord = require("users.manage")) -> Any:
    await users.progress.read_to_end()  # the users as the log has them, not as this replica last read them
    old = users.by_name.get(name)
    if old is None:
        raise HTTPException(status_code=404, detail=f"name: no user {name!r}")
    if old.role is Role.ADMIN and not old.revoked and not users.has_admin(besides=name):
        # with no admin left nobody could add or revoke anyone through the API
        return conflict("name", f"{name!r} is the last admin; add another admin first")
    rec = user_record(name, old.role, new_token(), now=clock.now(), by=admin.name, revoked=True)
    await publisher.send(USERS.name, rec.name, rec, what="the user")
    users.apply(rec)
    log.info("user_revoked", user=name, by=admin.name)
    return {"name": name, "revoked": True}
