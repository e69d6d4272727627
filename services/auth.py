"""Who may do what: one table of permissions by role, and the FastAPI dependency enforcing it.

401 without a valid token (Authorization: Bearer …, or the `yingji_token` cookie set by the sign-in
page); 403 with a valid token whose role lacks the permission.
"""

from __future__ import annotations

from fastapi import Depends, HTTPException, Request

from services.users import UserDirectory
from topics.models import Role, UserRecord

ALL = frozenset(Role)
PERMISSIONS: dict[str, frozenset[Role]] = {
    "incident.raise": frozenset({Role.DUTY_OFFICER}),
    "incident.file": frozenset({Role.DUTY_OFFICER}),
    "incident.approve": frozenset({Role.COMMANDER}),
    "incident.end": frozenset({Role.COMMANDER}),
    "incident.read": ALL,
    "incident.private": frozenset({Role.DUTY_OFFICER, Role.COMMANDER}),  # reporter's name and phone
    "drill.run": frozenset({Role.DRILL_CONTROLLER}),
    "users.manage": frozenset({Role.ADMIN}),
    "metrics.read": ALL,
}
COOKIE = "yingji_token"


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.cookies.get(COOKIE) or None


def require(permission: str):
    roles = PERMISSIONS[permission]

    async def dependency(request: Request) -> UserRecord:
        directory: UserDirectory = request.app.state.users
        token = bearer(request)
        user = directory.authenticate(token) if token else None
        if user is None:
            raise HTTPException(status_code=401, detail="sign in: a valid bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})
        if user.role not in roles:
            raise HTTPException(status_code=403, detail=f"role {user.role.value} may not {permission}")
        return user

    dependency.permission = permission  # type: ignore[attr-defined]  # read by the route × role test
    return Depends(dependency)
