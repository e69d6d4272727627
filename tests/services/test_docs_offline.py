"""/docs works with no internet: everything it loads is served by the API itself (issue 17 §4;
FastAPI's own page loads Swagger UI from a CDN, and rendered blank here)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from services.settings import Settings
from services.web.app import create_app

# what the page loads: src= and href= of its tags, and the spec Swagger UI fetches (`url:`)
LOADED = re.compile(r"""(?:src|href)=["']([^"']+)["']|\burl:\s*'([^']+)'""")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("docs"), bootstrap_servers="127.0.0.1:1"))
    return TestClient(app)  # no lifespan: no broker needed


def test_every_asset_the_docs_page_loads_is_served_here(client):
    page, needs = "/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "/openapi.json"}
    resp = client.get(page)
    assert resp.status_code == 200
    urls = [a or b for a, b in LOADED.findall(resp.text)]
    assert all(any(u.endswith(n) for u in urls) for n in needs), urls  # the scripts and the spec themselves
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url} from elsewhere"
        asset = client.get(url)
        assert asset.status_code == 200 and asset.content, (url, asset.status_code)
