"""/docs renders in a browser that can reach nothing but the service (an office network, or this
machine): Swagger UI comes from the package (fastapi-offline), not from a CDN."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.e2e


def offline(context, service) -> list[str]:
    """Every request to anywhere but the service is refused; the list says which were tried."""
    tried: list[str] = []
    here = urlsplit(service.api).netloc

    def route(r):
        if urlsplit(r.request.url).netloc == here or r.request.url.startswith("data:"):
            r.continue_()
        else:
            tried.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    return tried


def test_swagger_ui_renders_every_operation_offline(service, context):
    from playwright.sync_api import expect

    elsewhere = offline(context, service)
    page = context.new_page()
    page.goto(service.api + "/docs")
    expect(page.locator(".opblock").first).to_be_visible(timeout=15_000)
    operations = sum(len(m) for m in page.request.get(service.api + "/openapi.json").json()["paths"].values())
    expect(page.locator(".opblock")).to_have_count(operations)
    expect(page.get_by_text("/incidents/{incident_id}/reports").first).to_be_visible()
    expect(page.locator(".btn.authorize")).to_be_visible()  # the bearer and cookie schemes are declared
    assert elsewhere == []
