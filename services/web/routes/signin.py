"""Sign-in for pages: `/login` checks a token and keeps it in the HttpOnly `yingji_token` cookie,
which every route accepts like a bearer token; `/logout` clears it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.web.auth import COOKIE
from services.web.state import PagesDep, UsersDep

router = APIRouter(include_in_schema=False)
COOKIE_MAX_AGE_S = 7 * 24 * 3600


def safe_next(target: str | None) -> str:
    """Only paths on this site: no scheme, no host, no `//evil`, no control characters."""
    if (not target or not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target)):
        return "/board"
    return target


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, pages: PagesDep, next: str | None = None) -> Response:
    return pages.render(request, "login.html", user=None, next_path=safe_next(next))


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, users: UsersDep, pages: PagesDep, token: Annotated[str, Form()] = "",
                next: Annotated[str | None, Form()] = None) -> Response:
    token = token.strip()
    next_path = safe_next(next)
    user = await users.authenticate_read(token) if token else None
    if user is None:
        return pages.render(request, "login.html", user=None, status_code=401, next_path=next_path,
                            error="令牌无效或已被吊销，请核对后重试。")
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE_S, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response


@router.get("/logout")
async def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
