"""Test doubles of the API's publisher, shared by the API tests that need no broker."""

from __future__ import annotations


class Kept:
    """A publisher that keeps what it is given and acknowledges at once."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, object]] = []
        self.ready = True

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, topic: str, key: str, record, *, what: str) -> None:
        self.records.append((topic, key, record))
