"""The pages' HTML: Jinja2 templates (templates/, autoescaped) and the static assets (static/, no
build step, no CDN), each linked with a hash of its content so a browser never runs a stale script."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from services.web.permissions import can
from topics.models import Role, UserRecord

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
TEMPLATES_DIR = HERE / "templates"
# /static/vendor/: third-party scripts, not in git. `make web-assets` fetches them from Maven as WebJars
# (deploy/web/pom.xml) into .web/vendor/: Apache ECharts (Apache License 2.0; its LICENSE and NOTICE
# are served beside it) draws the board's map.
VENDOR_SCRIPTS = ("echarts.min.js",)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# The roles as the pages name them (the plan names units and people, not the service's roles).
ROLE_LABEL = {
    Role.DUTY_OFFICER: "值班员",
    Role.COMMANDER: "指挥员",
    Role.DRILL_CONTROLLER: "演练导调",
    Role.VIEWER: "观察席",
    Role.ADMIN: "管理员",
}


class Pages:
    """The templates and the assets' versions, read once when the app is built."""

    def __init__(self, templates_dir: Path = TEMPLATES_DIR, static_dir: Path = STATIC_DIR) -> None:
        # Jinja2Templates turns autoescape on for .html templates
        self.templates = Jinja2Templates(directory=templates_dir)
        self.versions = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:10]
                         for p in static_dir.iterdir() if p.is_file()}
        self.templates.env.globals.update(asset=self.asset, can=can, role_label=role_label)

    def asset(self, name: str) -> str:
        return f"/static/{name}?v={self.versions.get(name, '0')}"

    def render(self, request: Request, template: str, *, user: UserRecord | None, status_code: int = 200,
               **context: Any) -> HTMLResponse:
        return self.templates.TemplateResponse(request, template, {"user": user, **context},
                                               status_code=status_code, headers=SECURITY_HEADERS)

    def forbidden(self, request: Request, user: UserRecord | None, permission: str) -> HTMLResponse:
        return self.render(request, "forbidden.html", user=user, status_code=403, permission=permission,
                           role=role_label(user.role) if user else "未登录")


def role_label(role: Role) -> str:
    return ROLE_LABEL.get(role, role.value)


class VendorFiles(StaticFiles):
    """The files of `directory` (settings.vendor_dir) at /static/vendor/. The directory may be
    missing (`make web-assets` not run): the API starts all the same and each path answers 404,
    where Starlette's StaticFiles would fail the first request."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory=directory, check_dir=False)

    async def check_config(self) -> None:
        return None  # a missing directory: every lookup finds nothing, so 404


def missing_vendor_scripts(directory: Path) -> list[str]:
    return [name for name in VENDOR_SCRIPTS if not (directory / name).is_file()]
