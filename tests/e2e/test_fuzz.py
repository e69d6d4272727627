"""Hostile input (issue 5 §3): the API fuzzed from its own OpenAPI document by schemathesis, each
route called as a user allowed to use it. Zero 5xx."""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

pytestmark = pytest.mark.e2e
SEEN: Counter = Counter()


def role_for(method: str, path: str) -> str:
    if path.startswith("/users"):
        return "admin"
    if path.startswith("/drills") and method == "POST":
        return "drill_controller"
    if path.endswith(("/approvals", "/end")):
        return "commander"
    if method == "POST" or path.endswith("/private"):
        return "duty_officer"
    return "viewer"


def test_no_server_errors(service):
    """Each operation of /openapi.json, 60 generated cases each (schemathesis strategies driven by
    hypothesis directly: its pytest plugin does not load under pytest 9)."""
    schema = schemathesis.openapi.from_url(f"{service.api}/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() == "DELETE":  # revoking users at random would sign the suite out
            continue
        token = service.tokens[role_for(operation.method.upper(), operation.path)]

        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case):
            response = case.call(base_url=service.api, headers={"Authorization": f"Bearer {token}"}, timeout=30)
            SEEN[response.status_code // 100] += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}")

        call()
    print(f"\nfuzz: {sum(SEEN.values())} cases, by status class {dict(sorted(SEEN.items()))}, 5xx={SEEN[5]}")
    assert not failures, failures[:5]
