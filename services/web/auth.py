"""Sign-in: the FastAPI dependencies that enforce the table of services.web.permissions.

401 without a valid token (Authorization: Bearer …, or the `yingji_token` cookie set by the sign-in
page); 403 with a valid token whose role lacks the permission. Both ways in are FastAPI security
schemes, so /openapi.json declares them and /docs can sign in.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from services.web.permissions import PERMISSIONS
from services.web.state import PagesDep, UsersDep
from topics.models import UserRecord

COOKIE = "yingji_token"

# Declarations, not state: FastAPI reads them to parse the request and to describe the API.
# auto_error=False: a missing one is not an error by itself (either way in will do), `require` decides.
bearer_scheme = HTTPBearer(auto_error=False, description="a user's token, as `yingji user add` or POST /users made it")
cookie_scheme = APIKeyCookie(name=COOKIE, auto_error=False, description="the same token, set by the sign-in page")


async def signed_in_token(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    cookie: Annotated[str | None, Depends(cookie_scheme)],
) -> str | None:
    """The token the request carries: the Authorization header's, else the sign-in cookie's."""
    return (bearer.credentials.strip() if bearer else None) or cookie or None


Token = Annotated[str | None, Depends(signed_in_token)]


async def check(permission: str, users: UsersDep, token: str | None) -> UserRecord:
    """The signed-in user, if their role has the permission; else 401 or 403. A token unknown here is
    looked up again once the users topic is read to its end: made on another replica, it works here too."""
    user = await users.authenticate_read(token) if token else None
    if user is None:
        raise HTTPException(status_code=401, detail="sign in: a valid bearer token is required",
                            headers={"WWW-Authenticate": "Bearer"})
    if user.role not in PERMISSIONS[permission]:
        raise HTTPException(status_code=403, detail=f"role {user.role.value} may not {permission}")
    return user


def require(permission: str):
    """`user: UserRecord = require("incident.read")`: the route's permission, checked before it runs."""
    PERMISSIONS[permission]  # noqa: B018 - a misspelt permission fails at import, not at the first request

    async def signed_in_with_permission(users: UsersDep, token: Token) -> UserRecord:
        return await check(permission, users, token)

    signed_in_with_permission.permission = permission  # type: ignore[attr-defined]  # read by the route × role test
    return Depends(signed_in_with_permission)



def wants_html(request: Request) -> bool:
    """A browser navigating (Accept: text/html) gets pages; API clients keep JSON status codes."""
    return "text/html" in request.headers.get("accept", "")


def require_page(permission: str):
    """`require(permission)` for a page: a browser without a valid sign-in is sent to /login, one
    whose role lacks the permission sees a 403 page; other clients get the API's 401/403. The route
    receives the user, or a Response to return as it is."""
    PERMISSIONS[permission]  # noqa: B018 - as in require

    async def page_user(request: Request, users: UsersDep, pages: PagesDep, token: Token) -> UserRecord | Response:
        try:
            return await check(permission, users, token)
        except HTTPException as exc:
            if not wants_html(request):
                raise
            if exc.status_code == 401:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
            return pages.forbidden(request, users.authenticate(token or ""), permission)

    page_user.permission = permission  # type: ignore[attr-defined]  # read by the route × role test
    return Depends(page_user)
