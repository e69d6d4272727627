"""Two API replicas moving one warning at once (issue 22 item 2): each checks the command against the same
state and writes step n; the log keeps the first, so the replica whose event is not the one kept answers
409 and tells no unit (its notices are never sent). No broker: a fake log hands the records back in the
order it took them, as the followed partition would."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from aiokafka import TopicPartition

from playbooks.plan import load_plan
from playbooks.warning.rules import load_warnings
from services.warnings.book import WarningBook, WarningConflict, apply_command
from services.web.publisher import Written
from tests.services.test_duty_api import NOW
from topics.catalog import WARNING_EVENTS
from topics.warnings import WarningCommand, WarningContent

PLAN = load_plan()
CONFIG = load_warnings(plan=PLAN)
TP = TopicPartition(WARNING_EVENTS.name, 0)


class Log:
    """One partition: every book reads every record in the order written."""

    def __init__(self, *books: WarningBook) -> None:
        self.books, self.records, self.notices = books, [], []
        for book in books:
            book.progress.consumer = object()  # as if following

    def sender(self, replica: str):
        async def send(topic: str, key: str, record, what: str) -> Written | None:  # noqa: ARG001
            await asyncio.sleep(0)  # the broker's round trip: the other replica checks its command meanwhile
            if topic != WARNING_EVENTS.name:
                self.notices.append((replica, record))
                return None
            self.records.append(record)
            offset = len(self.records) - 1
            for book in self.books:
                book.apply(record)
                book.progress.advance(TP, offset + 1)
            return Written(TP, offset)
        return send


def draft(cmd_id: str, by: str) -> WarningCommand:
    content = WarningContent(category="rainstorm", level="blue", start=NOW + timedelta(hours=1),
                             area=["street_zhongcang"], hazards="暴雨", measures=["collect", "analyse", "publish_forecast", "advise_public"],
                             issuer="district_meteorological_bureau")
    return WarningCommand(id=cmd_id, warning_id="w-race", kind="draft", by=by, unit="district_meteorological_bureau",
                          at=NOW, content=content)


def test_the_same_step_written_by_two_replicas_counts_once_and_the_second_is_told_so():
    a, b = WarningBook(), WarningBook()
    log = Log(a, b)

    async def both() -> list:
        return await asyncio.gather(apply_command(a, draft("w-race.draft.a", "a"), CONFIG, PLAN, log.sender("a")),
                                    apply_command(b, draft("w-race.draft.b", "b"), CONFIG, PLAN, log.sender("b")),
                                    return_exceptions=True)

    results = asyncio.run(both())
    assert not isinstance(results[0], Exception) and not results[0].refused, results[0]
    assert len(log.records) == 2 and {r.seq for r in log.records} == {log.records[0].seq}  # both wrote step 1
    assert not isinstance(results[0], Exception) and isinstance(results[1], WarningConflict)
    assert a.history("w-race") == b.history("w-race") == [log.records[0]]  # every replica: the first one
    assert all(replica == "a" for replica, _ in log.notices)


@pytest.mark.parametrize("following", [False, True])
def test_a_book_without_a_broker_applies_what_it_wrote(following):
    book = WarningBook()
    if following:
        log = Log(book)
        send = log.sender("a")
    else:
        async def send(topic, key, record, what):  # noqa: ARG001
            return None
    result = asyncio.run(apply_command(book, draft("w-race.draft.a", "a"), CONFIG, PLAN, send))
    assert not result.refused and book.state("w-race") is not None
