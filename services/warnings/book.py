"""Every warning's events, followed from `yingji.warnings.events` (one partition, in order), and each
warning's state folded from them (playbooks/warning/rules.py fold). The API checks a command against
the state here and writes its events; a change is made on the warnings read back, one at a time.

A command accepted becomes: its events on the warnings topic, then one notice per unit it tells on the
notifications topic (a drill's on the drill topic), addressed to the person on duty, which the
delivery stage takes to them. Events before notices: a notice never tells of a step not on record."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from aiokafka import TopicPartition
from pydantic import ValidationError

from playbooks.plan import Plan
from playbooks.warning.rules import Result, WarningsFile, WarningState, fold, step
from services.following import ReadProgress, follow_from_start
from topics.catalog import DRILL_NOTIFICATIONS, NOTIFICATIONS_REQUESTED, WARNING_EVENTS
from topics.delivery import fit_id
from topics.models import NotificationRequested
from topics.warnings import WarningCommand, WarningEvent, WarningEventKind, WarningStatus

log = structlog.get_logger("yingji", stage="warnings")
TELLS = {WarningEventKind.ISSUED, WarningEventKind.ADJUSTED, WarningEventKind.LIFTED}
KIND_WORDS = {WarningEventKind.ISSUED: "发布", WarningEventKind.ADJUSTED: "调整", WarningEventKind.LIFTED: "解除"}
# (topic, key, record, what) -> acknowledged by the broker
Send = Callable[[str, str, object, str], Awaitable[object]]  # returns where it was written (Publisher.send), or None
Address = Callable[[NotificationRequested], NotificationRequested]


class WarningBook:
    def __init__(self) -> None:
        self.events: dict[str, dict[int, WarningEvent]] = {}
        self.caught_up = asyncio.Event()
        self.progress = ReadProgress()
        self.writing = asyncio.Lock()
        # told of each new event's warning id (create_app: the view, whose subscribers feed the board)
        self.listeners: list[Callable[[str], None]] = []

    def apply(self, event: WarningEvent) -> bool:
        seqs = self.events.setdefault(event.warning_id, {})
        if event.seq in seqs:
            return False
        seqs[event.seq] = event
        for listener in self.listeners:
            listener(event.warning_id)
        return True

    def history(self, warning_id: str) -> list[WarningEvent]:
        return [e for _, e in sorted(self.events.get(warning_id, {}).items())]

    def state(self, warning_id: str) -> WarningState | None:
        return fold(self.history(warning_id))

    def all(self) -> list[WarningState]:
        return [s for wid in self.events if (s := self.state(wid)) is not None]

    def active(self) -> list[WarningState]:
        """Issued and not lifted: what the board shows."""
        return [s for s in self.all() if s.status is WarningStatus.ISSUED]

    def apply_raw(self, topic: str, value: bytes, offset: int) -> None:  # noqa: ARG002 - follow_from_start's apply
        try:
            self.apply(WarningEvent.model_validate_json(value))
        except (ValidationError, ValueError) as exc:
            log.error("bad_warning_record", offset=offset, error=type(exc).__name__)

    async def follow(self, bootstrap: str) -> None:
        await follow_from_start(bootstrap, [TopicPartition(WARNING_EVENTS.name, 0)], self.apply_raw, self.caught_up,
                                "warnings", self.progress)


def notices(event: WarningEvent, plan: Plan, config: WarningsFile) -> list[NotificationRequested]:
    """One notice per unit the step tells (its tasks named in the why), kind `warning`."""
    if event.kind not in TELLS:
        return []
    level = config.level(event.level)
    category = config.category(event.content.category or "")
    out = []
    for unit_id in event.told:
        mine = [t for t in event.tasks if t.unit_id == unit_id]
        tasks = "、".join(dict.fromkeys(t.name[:24] for t in mine))[:400]
        why = (f"{'【演练】' if event.drill else ''}{category.name if category else ''}{level.name}预警"
               f"{KIND_WORDS[event.kind]}（{level.grade}）" + (f"：{tasks}" if tasks else ""))
        key = fit_id(f"{event.id}.{unit_id}")
        name = plan.unit_name(unit_id) if unit_id in plan.units or unit_id in plan.parties else unit_id
        out.append(NotificationRequested(
            id=key, dedup_key=key, incident_id=event.warning_id, drill=event.drill, unit_id=unit_id, unit=name,
            kind="warning", why=why, rule=f"warning.{event.kind.value}", section="3.2.5" if mine else "3.2.7",
            requested_at=event.at))
    return out


class WarningConflict(Exception):
    """The command's events were written, but the log kept another replica's step of the same warning
    first (the same seq): the command is not in effect, no unit is told, the caller reads the warning
    again. `read_back` False: the events were not read back in time, so which came first is not known yet."""

    def __init__(self, message: str, *, read_back: bool = True) -> None:
        super().__init__(message)
        self.read_back = read_back


async def apply_command(book: WarningBook, cmd: WarningCommand, config: WarningsFile, plan: Plan, send: Send,
                        address: Address | None = None) -> Result:
    """The command checked against the warning read back; if accepted, its events and notices written
    (each acknowledged) and applied here. The caller holds book.writing.

    While the book follows the topic (the API), which step counts is the log's to say: two replicas may
    check a command against the same state at once and both write seq n; the first on the (one)
    partition is the step, for every replica's book alike. So the events are read back before anyone is
    told, and a command whose event is not the one kept raises WarningConflict. Else (tests, a drill's
    book without a broker) they are applied here as written."""
    result = step(book.state(cmd.warning_id), cmd, config, plan)
    if result.refused:
        return result
    written = [await send(WARNING_EVENTS.name, event.warning_id, event, "the warning") for event in result.events]
    offsets = {w.tp: w.offset for w in written if w is not None and hasattr(w, "offset")}
    if offsets and book.progress.consumer is not None:
        if not await book.progress.reached(offsets):
            raise WarningConflict(f"{cmd.warning_id}: written, not read back yet", read_back=False)
        for event in result.events:
            kept = book.events.get(event.warning_id, {}).get(event.seq)
            if kept != event:  # the same seq (and id) from another replica: another step
                log.warning("warning_conflict", warning_id=event.warning_id, seq=event.seq, kind=cmd.kind)
                raise WarningConflict(f"{cmd.warning_id}: changed meanwhile (step {event.seq} is another "
                                      "replica's); read it again")
    else:
        for event in result.events:
            book.apply(event)
    for event in result.events:
        for notice in notices(event, plan, config):
            if address is not None:
                try:
                    notice = address(notice)
                except Exception:  # noqa: BLE001 - a notice unaddressed is better than a unit not told
                    log.exception("notice_not_addressed", warning_id=event.warning_id)
            topic = DRILL_NOTIFICATIONS.name if notice.drill else NOTIFICATIONS_REQUESTED.name
            await send(topic, notice.dedup_key, notice, "the notice")
        log.info("warning", warning_id=event.warning_id, kind=event.kind.value, level=event.level.value,
                 told=len(event.told), drill=event.drill)
    return result
