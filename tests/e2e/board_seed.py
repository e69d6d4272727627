"""Incidents for the board at size (issue 21), raised the way a duty officer raises them: POST /incidents
on the running service, so each one goes the whole way (API, the reported topic, the worker's decision,
its obligations and breaches, the API's read model) on the local Kafka.

A deterministic mix (a seeded RNG): every street and township, and some with none; the types of table
2.3.6; casualties that make every grade and level; received over the last 20 hours, so the older ones
are overdue (their reports missed, 督办 under way) and the trends have hours to show."""

from __future__ import annotations

import asyncio
import random
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import httpx

from playbooks.plan import Plan

IN_FLIGHT = 16  # posts at once: the API, the broker and the worker share two cores


def reports(plan: Plan, n: int, *, seed: int = 21, now: datetime | None = None,
            prefix: str = "seed") -> list[dict]:
    """n report bodies for POST /incidents."""
    rng = random.Random(seed)
    now = now or datetime.now(timezone.utc)
    streets = list(plan.streets)
    types = sorted(t.id for t in plan.table_types)
    out = []
    for i in range(n):
        roll = rng.random()
        # most are small; a few hurt people (二级), a few kill (较大 and above: 一级)
        facts = {} if roll < 0.7 else ({"injuries": rng.randint(1, 5)} if roll < 0.9 else {"deaths": rng.randint(1, 4)})
        # a third are old enough that their first reports are overdue
        age = timedelta(minutes=rng.uniform(0, 9)) if rng.random() < 0.66 else timedelta(hours=rng.uniform(0.2, 20))
        received = now - age
        out.append({
            "report_id": f"{prefix}-{seed}-{i:05d}",
            "type": rng.choice(types),
            "occurred_at": (received - timedelta(minutes=rng.uniform(0, 30))).isoformat(),
            "received_at": received.isoformat(),
            "location": {"street": rng.choice(streets)} if rng.random() < 0.97 else {},
            "facts": facts,
        })
    return out


async def _post_all(api: str, token: str, bodies: list[dict]) -> list[str]:
    ids: list[str | None] = [None] * len(bodies)
    gate = asyncio.Semaphore(IN_FLIGHT)
    async with httpx.AsyncClient(base_url=api, timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
        async def one(i: int, body: dict) -> None:
            async with gate:
                for attempt in range(5):
                    resp = await client.post("/incidents", json=body)
                    if resp.status_code in (200, 202):
                        ids[i] = resp.json()["incident_id"]
                        return
                    if resp.status_code < 500 and resp.status_code != 429:
                        raise AssertionError(f"report {body['report_id']}: {resp.status_code} {resp.text}")
                    await asyncio.sleep(0.5 * (attempt + 1))
                raise AssertionError(f"report {body['report_id']}: still {resp.status_code} after 5 tries")

        await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
    return [i for i in ids if i is not None]


def post_all(api: str, token: str, bodies: list[dict]) -> list[str]:
    """Raise them all (IN_FLIGHT at once, a 5xx or 429 tried again: the report id makes a retry the same
    report); the incident ids, in the bodies' order. From a thread with a running event loop (a page
    test: Playwright's sync API runs one) the posting goes on in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_post_all(api, token, bodies))
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _post_all(api, token, bodies)).result()
