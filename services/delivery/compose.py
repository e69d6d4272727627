"""What the delivery stage sends and to whom: a notice taken (person and channels chosen once), a
ladder step's person found on duty at the step's own time, and the message of one try with its ack
link. Reads the duty book (people, contacts) in memory; writes nothing.

Contacts stay here, in memory: a record on the deliveries topic names a person by id and a channel
by name, never an address."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from playbooks.delivery.book import NoticeBook, Try
from playbooks.delivery.channels import ChannelsFile, choose_channels
from playbooks.delivery.ladder import LadderStep
from playbooks.duty.roster import on_duty
from services.delivery.channels import Outgoing
from services.delivery.tokens import make_token
from services.duty.book import DutyBook
from topics.delivery import LadderStepTaken, NoticeTaken, taken_id
from topics.duty import Contacts
from topics.models import NotificationRequested

SHANGHAI = ZoneInfo("Asia/Shanghai")
DRILL_RULE = "drill"
KIND_NAMES = {"routing": "通知", "reminder": "提醒", "escalation": "督办", "approved_report": "报告",
              "end": "响应结束", "handover": "交接班",
              "test": "测试消息", "warning": "预警", "rectification": "限期整改"}
# what a notice's incident_id names, where it is no incident's
SUBJECT_NAMES = {"rectification": "通报"}


@dataclass
class Composer:
    channels: ChannelsFile
    duty: DutyBook | None
    built: set[str]  # the channels this process could build (settings.channels, and their secrets)
    link_base: str
    ack_key: bytes

    # --- whom --------------------------------------------------------------------------------

    def contacts(self, person_id: str | None) -> Contacts | None:
        if person_id is None or self.duty is None:
            return None
        person = self.duty.roster().person(person_id)
        return person.contacts if person is not None else None

    def _choose(self, notice: NotificationRequested, person_id: str | None) -> tuple[list[str], list[str], str, list[str]]:
        """(channels, spare, rule, reasons) for the person: a drill's go to the drill's addresses only."""
        if notice.drill and person_id not in notice.drill_participants:
            chans = [c for c in self.channels.drill.value if c in self.built]
            return chans, [], DRILL_RULE, [f"drill: channels.yaml drill addresses only ({', '.join(chans) or 'none built'}); "
                                           f"{self.channels.drill.source}"]
        contacts = self.contacts(person_id)
        if person_id is None:
            return [], [], "nobody", ["nobody on duty for the notice's post"]
        if contacts is None:
            return [], [], "not_in_directory", [f"{person_id} is not in the directory"]
        level = notice.level.value if notice.level is not None else None
        choice = choose_channels(notice.kind, level, contacts, self.channels)
        chans = [c for c in choice.channels if c in self.built]
        spare = [c for c in choice.spare if c in self.built]
        reasons = list(choice.reasons)
        if notice.drill:
            reasons.insert(0, f"drill: {person_id} is a participant the scenario names: their own channels, marked 【演练】")
        off = [c for c in (*choice.channels, *choice.spare) if c not in self.built]
        if off:
            reasons.append(f"not configured in this deployment (YINGJI_CHANNELS): {', '.join(off)}")
        if not chans and spare:
            chans, spare = spare[:1], spare[1:]
        return chans, spare, choice.rule, reasons

    def take(self, notice: NotificationRequested, now: datetime) -> NoticeTaken:
        person_id = notice.on_duty.person_id if notice.on_duty is not None else None
        chans, spare, rule, reasons = self._choose(notice, person_id)
        return NoticeTaken(id=taken_id(notice.dedup_key), dedup_key=notice.dedup_key, notice=notice,
                           person_id=person_id, channels=chans, spare=spare, rule=rule, reasons=reasons, at=now,
                           drill=notice.drill)

    def step_taken(self, step: LadderStep, notice: NotificationRequested, now: datetime) -> LadderStepTaken:
        """The step with the person on duty for its post at the step's own time, and their channels."""
        person_id: str | None = None
        found_reasons: list[str] = []
        if self.duty is not None:
            index = self.duty.index_for(step.at)  # expanded once per window, as the worker addresses notices
            found = on_duty(self.duty.roster(), self.duty.config, step.unit_id, step.post, step.at,
                            in_force=index.in_force(step.at))
            person_id = found.person.id if found.person is not None else None
            found_reasons = found.reasons
        chans, spare, _, reasons = self._choose(notice, person_id)
        return LadderStepTaken(id=step.id, dedup_key=step.dedup_key, step=step.n, incident_id=step.incident_id,
                               unit_id=step.unit_id, role=step.role, post=step.post, person_id=person_id,
                               channels=chans, spare=spare, at=step.at, recorded_at=now,
                               reasons=[*step.reasons, *found_reasons, *reasons], drill=step.drill)

    # --- what ------------------------------------------------------------------------------

    def address(self, notice: NotificationRequested, person_id: str, channel: str) -> tuple[str | None, str | None]:
        """(the address on the channel, the mobile to @-mention) or (None, None): the contact is gone."""
        if notice.drill and person_id not in notice.drill_participants:
            return self.channels.drill.value.get(channel), None
        contacts = self.contacts(person_id)
        if contacts is None:
            return None, None
        return self.channels.channel(channel).address(contacts), contacts.mobile

    def link(self, dedup_key: str, person_id: str, now: datetime) -> str:
        return f"{self.link_base}/ack/{make_token(dedup_key, person_id, now, self.ack_key)}"

    def outgoing(self, book: NoticeBook, t: Try, now: datetime) -> Outgoing | None:
        taken = book.taken
        assert taken is not None
        notice = taken.notice
        address, mobile = self.address(notice, t.person_id, t.channel)
        if not address:
            return None
        level = f"【{notice.level.value}】" if notice.level is not None else ""
        subject = f"{level}{KIND_NAMES.get(notice.kind, '通知')}：{notice.unit}"
        lines = [notice.why, f"{SUBJECT_NAMES.get(notice.kind, '事件')}：{notice.incident_id}　依据：{notice.section}",
                 f"时间：{_local(notice.requested_at)}"]
        if t.step > 0:
            step = book.steps[t.step]
            subject = f"【未阅上报 第{t.step}步】{subject}"
            lines.insert(0, step.reasons[0] if step.reasons else f"第 {t.step} 步")
        lines.append(f"已阅请点：{self.link(notice.dedup_key, t.person_id, now)}")
        return Outgoing(dedup_key=f"{notice.dedup_key}.s{t.step}" if t.step else notice.dedup_key,
                        person_id=t.person_id, address=address, subject=subject, text="\n".join(lines),
                        drill=notice.drill, resend=t.resend, mobile=mobile)


def _local(at: datetime) -> str:
    return at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def base_time(book: NoticeBook, step: int) -> datetime:
    """When a send's clock starts: the notice's requested_at, or a ladder step's own time."""
    if step and step in book.steps:
        return book.steps[step].at
    assert book.taken is not None
    return book.taken.notice.requested_at


def seconds_since(then: datetime, now: datetime) -> float:
    return max(0.0, (now - then).total_seconds())

