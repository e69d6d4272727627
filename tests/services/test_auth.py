"""Every route × every role: 401 without a token, 403 with the wrong role, through with the right one."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from services.web.app import create_app
from services.web.permissions import PERMISSIONS
from services.settings import Settings
from services.users import new_token, user_record
from topics.models import Role

# /ack/{token}: the ack link, whose token is its own credential (services/web/routes/ack.py);
# /warnings/feed.atom: the live warnings, public as the warnings themselves are (issue 20, 3.2.8)
PUBLIC = {"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/login", "/logout", "/ack/{token}",
          "/warnings/feed.atom"}
NOW = datetime(2026, 11, 25, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("auth"), bootstrap_servers="127.0.0.1:1")
    app = create_app(settings)
    tokens = {}
    for role in Role:
        token = new_token()
        app.state.users.apply(user_record(f"u-{role.value}", role, token, now=NOW, by="test"))
        tokens[role] = token
    revoked = new_token()
    app.state.users.apply(user_record("gone", Role.ADMIN, revoked, now=NOW, by="test"))
    app.state.users.apply(user_record("gone", Role.ADMIN, new_token(), now=NOW, by="test", revoked=True))
    tokens["revoked"] = revoked
    return app, TestClient(app, raise_server_exceptions=True), tokens  # no lifespan: no broker needed


def route_permission(route: APIRoute) -> str | None:
    for dep in route.dependant.dependencies:
        perm = getattr(dep.call, "permission", None)
        if perm:
            return perm
    return None


def all_routes(routes):
    """Routes of the app and of every router it includes (FastAPI may list an included router as one entry)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from all_routes(inner.routes)
        else:
            yield route


def protected_routes(app):
    out = []
    for route in all_routes(app.routes):
        if isinstance(route, APIRoute) and route.path not in PUBLIC:
            for method in sorted(route.methods):
                out.append((method, route.path, route_permission(route)))
    return out


def test_every_route_is_protected_or_listed_public(api):
    app, _, _ = api
    unprotected = [(m, p) for m, p, perm in protected_routes(app) if perm is None]
    assert unprotected == []




@pytest.mark.parametrize("who", [*Role, "anonymous", "revoked"], ids=lambda r: getattr(r, "value", r))
def test_route_by_role(api, who):
    app, client, tokens = api
    checked = 0
    for method, path, perm in protected_routes(app):
        url = path.replace("{incident_id}", "inc-1").replace("{name}", "someone")
        headers = {} if who == "anonymous" else {"Authorization": f"Bearer {tokens[who]}"}
        resp = client.request(method, url, headers=headers, json={})
        if who in ("anonymous", "revoked"):
            expected = {401}
        elif who in PERMISSIONS[perm]:
            expected = None
        else:
            expected = {403}
        if expected is None:
            assert resp.status_code not in (401, 403), (method, path, who, resp.text)
        else:
            assert resp.status_code in expected, (method, path, who, resp.status_code)
        checked += 1
    assert checked >= 10


def test_cookie_sign_in_works_like_a_bearer_token(api):
    _, client, tokens = api
    client.cookies.set("yingji_token", tokens[Role.VIEWER])
    try:
        assert client.get("/incidents").status_code == 200
    finally:
        client.cookies.clear()


def test_the_api_process_scrubs_personal_data_from_its_log_lines(tmp_path, capsys):
    """The API runs as its own process (uvicorn --factory): create_app installs the same scrubbing
    processor as the worker, so a log line that binds a reporter's phone never prints it."""
    import structlog

    structlog.reset_defaults()  # as a fresh process starts
    try:
        create_app(Settings(data_dir=tmp_path, bootstrap_servers="127.0.0.1:1", log_json=True))
        structlog.get_logger().info("probe", phone="13800000000", reporter={"name": "张三"})
        err = capsys.readouterr().err
    finally:
        structlog.reset_defaults()  # the logger it made writes to this test's captured stderr
    assert "probe" in err
    assert "13800000000" not in err and "张三" not in err
