"""The plan in force, from the log (issue 24 item 3): every adoption on yingji.plan.adoptions followed from the
start and folded compare-and-set in log order (playbooks.adoptions.rule: an adoption takes effect only if the
version it replaces is the one in force when it is read, else it is refused as a conflict), the texts of the
one in force loaded (written into a temporary directory and read by the plan's own loader) and handed to
whoever holds a plan (the worker's agent, the API's routes) through `listeners`.

Every worker and API replica follows the same one-partition topic and folds it the same way, so they all switch
to the same revision, each as soon as it reads it; a process started later reads it before anything else
(`ready`). An adoption whose texts do not load (it was validated before it was written, so only a hand-made
record or a loader changed since) is kept on record as refused and the plan in force stays: nothing decides
under half a plan.

`read_adoptions` / `publish_adoption` are the CLI's (kafka-python, synchronous); the book is the processes'
(aiokafka, services/following.py).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path

import structlog
from aiokafka import TopicPartition
from pydantic import ValidationError

from playbooks.adoptions import Refusal, Refused, Ruling, rollback_source, rule
from playbooks.plan import DATA_DIR, Plan, PlanError, load_plan
from playbooks.plan_diff import recorded
from services.following import ReadProgress, follow_from_start
from topics.catalog import PLAN_ADOPTIONS
from topics.plan import RECORD_MAX, SHIPPED, PlanAdopted, PlanChange

log = structlog.get_logger("yingji", stage="plan")
FOLD_WAIT_S = 120.0  # longest a process waits for its book to fold the adoptions read (our choice)
SETTLE_RETRY_S = 1.0  # a fold that failed (an OSError loading texts) is tried again after this
CACHED_PLANS = 4  # plans kept loaded by version: a rollback to a recent one switches without loading again

Listener = Callable[[Plan, PlanAdopted], None]


def plan_texts(data_dir: Path = DATA_DIR) -> dict[str, str]:
    """A plan's data directory as an adoption carries it: every YAML file's name and text (the files the
    version's digest is made of, playbooks.plan.load_plan)."""
    return {p.name: p.read_bytes().decode("utf-8") for p in sorted(Path(data_dir).glob("*.yaml"))}


def plan_of(adoption: PlanAdopted) -> Plan:
    """The adoption's plan, loaded from its texts; PlanError when they do not load or are not its version."""
    with tempfile.TemporaryDirectory(prefix="yingji-plan-") as tmp:
        for name, text in adoption.files.items():
            (Path(tmp) / name).write_bytes(text.encode("utf-8"))
        plan = load_plan(Path(tmp), fit_grid=True)  # one written before the grid was a plan file has none
    if plan.version != adoption.version:
        raise PlanError(f"{adoption.id}: its texts are version {plan.version}, the record says {adoption.version}")
    return plan


class RecordTooLarge(ValueError):
    """An adoption the topic would not take (topics.plan.RECORD_MAX, as written): its writer's 422 / exit 2."""


def with_changes(record: PlanAdopted, in_force: Plan, revised: Plan | None = None) -> PlanAdopted:
    """The record with what it changes in the plan in force, field by field (playbooks.plan_diff): its plan as
    given, else loaded from its texts (a rollback's), checked whole against what the topic takes. Every writer of
    an adoption (the CLI's adopt and rollback, POST /plan/adoptions and /plan/rollbacks) asks it last. When all its
    changes would take the record past RECORD_MAX, as many are kept as fit, the rest counted; RecordTooLarge when
    it does not fit even without them."""
    kept = recorded(in_force, revised if revised is not None else plan_of(record))
    changes, more = kept["changes"], kept["changes_more"]

    def made(n: int) -> tuple[PlanAdopted, int]:
        out = PlanAdopted.model_validate({**record.model_dump(), "changes": changes[:n],
                                          "changes_more": more + len(changes) - n})
        return out, len(out.model_dump_json().encode())

    best, size = made(len(changes))
    if size <= RECORD_MAX:
        return best
    low, high = 0, len(changes)  # the most changes that fit lies in [low, high): low fits (none, above), high does not
    best, size = made(0)
    if size > RECORD_MAX:
        raise RecordTooLarge(f"the adoption would be {size} bytes written, more than the topic takes ({RECORD_MAX}): "
                             "its YAML texts are too large")
    while high - low > 1:
        mid = (low + high) // 2
        candidate, size = made(mid)
        if size <= RECORD_MAX:
            best, low = candidate, mid
        else:
            high = mid
    return best


def change_text(c: PlanChange) -> str:
    """One change as people read it, on the board and in the CLI (the what-if page's script writes it alike):
    `file path：before → after`, or 新增 / 删除 and the item."""
    what = {"added": f"新增 {c.after}", "removed": f"删除 {c.before}"}.get(c.change, f"{c.before} → {c.after}")
    return f"{c.file} {c.path}：{what}"


def changes_lines(record: PlanAdopted, limit: int = 10) -> list[str]:
    """The changes as the CLI prints them, each with its section or source, at most `limit`."""
    lines = [change_text(c) + (f"（{c.basis}）" if c.basis else "") for c in record.changes[:limit]]
    more = len(record.changes) - len(lines) + record.changes_more
    return lines + ([f"…… and {more} more"] if more > 0 else [])


class LoadedPlans:
    """The plans loaded from adoptions' texts, by version (the last few kept: a rollback to a recent one switches
    without loading again), and the verdict on each version's texts: the fold (playbooks.adoptions) asks it only
    of an adoption it would take, once a version (its texts are checked to be that version first)."""

    def __init__(self, shipped: Plan, load: Callable[[PlanAdopted], Plan] = plan_of, *, keep: int = CACHED_PLANS) -> None:
        self.shipped, self._load, self.keep = shipped, load, keep
        self.cache: dict[str, Plan] = {shipped.version: shipped}
        self.verdicts: dict[str, str | None] = {shipped.version: None}  # version -> why its texts do not load

    def refusal(self, adoption: PlanAdopted) -> str | None:
        if adoption.version not in self.verdicts:
            try:
                self._keep(adoption.version, self._load(adoption))
                self.verdicts[adoption.version] = None
            except (PlanError, ValidationError, ValueError) as exc:
                # a verdict on the texts, the same in every reader; an OSError (a full disk writing them out) is
                # this process's trouble, not the texts': it is raised, and the book folds again a moment later
                self.verdicts[adoption.version] = str(exc)
        return self.verdicts[adoption.version]

    def plan(self, adoption: PlanAdopted | None) -> Plan:
        """The plan of an adoption the fold took (loaded again if it left the cache); None: the shipped plan."""
        if adoption is None:
            return self.shipped
        plan = self.cache.get(adoption.version)
        if plan is None:
            plan = self._keep(adoption.version, self._load(adoption))
        return plan

    def _keep(self, version: str, plan: Plan) -> Plan:
        self.cache[version] = plan
        while len(self.cache) > self.keep + 1:  # the shipped plan stays
            del self.cache[next(v for v in self.cache if v != self.shipped.version)]
        return plan


class PlanBook:
    """The adoptions in log order and the plan in force: the shipped one until an adoption takes effect."""

    def __init__(self, shipped: Plan, *, load: Callable[[PlanAdopted], Plan] = plan_of) -> None:
        self.shipped = shipped
        self.plan = shipped
        self.current: PlanAdopted | None = None  # the adoption in force; None: the shipped plan
        self.adoptions: list[PlanAdopted] = []
        self.ids: set[str] = set()
        self.ruling = rule((), shipped=shipped.version)
        self.refused: dict[str, str] = {}  # adoption id -> why it did not take effect (a conflict, its texts)
        self.listeners: list[Listener] = []
        self.caught_up = asyncio.Event()  # the topic read to the end it had when following began
        self.ready = asyncio.Event()  # caught up, and the plan is the one the adoptions read put in force
        self.progress = ReadProgress()
        self.plans = LoadedPlans(shipped, load)
        self._ruled = 0  # adoptions folded into `ruling`
        self._settling = asyncio.Lock()  # the switch loop and the worker's catch-up (newer_plan) both settle
        self._wake = asyncio.Event()

    def apply(self, record: PlanAdopted) -> None:
        if record.id in self.ids:
            return  # the same record again (a retried send): once
        self.ids.add(record.id)
        self.adoptions.append(record)
        self._wake.set()

    def apply_raw(self, topic: str, value: bytes, offset: int) -> None:  # noqa: ARG002 - follow_from_start's apply
        try:
            self.apply(PlanAdopted.model_validate_json(value))
        except (ValidationError, ValueError) as exc:
            log.error("bad_plan_adoption", offset=offset, error=type(exc).__name__)

    async def settle(self) -> None:
        """The adoptions read so far folded (playbooks.adoptions.rule: compare-and-set in log order) and the
        plan switched to the one in force, unless it is in force already."""
        async with self._settling:
            if len(self.adoptions) == self._ruled:
                return
            adoptions = list(self.adoptions)
            # off the event loop: a revision's texts take a few tenths of a second to load and check
            ruling = await asyncio.to_thread(rule, adoptions, shipped=self.shipped.version,
                                             refusal=self.plans.refusal)
            switching = ruling.adoption is not None and (self.current is None or ruling.adoption.id != self.current.id)
            # the plan loaded before anything of the ruling is shown: GET /plan never says a version is in force
            # that this process does not hold yet (and a failed load leaves the book as it was, to fold again)
            plan = await asyncio.to_thread(self.plans.plan, ruling.adoption) if switching else None
            for aid, why in ruling.refused.items():
                if aid not in self.refused:
                    log.error("plan_adoption_refused", adoption=aid, kind=why.kind.value, in_force=why.in_force,
                              error=why.reason[:500])
            self.ruling, self._ruled = ruling, len(adoptions)
            self.refused = {aid: why.reason for aid, why in ruling.refused.items()}
            if plan is not None and ruling.adoption is not None:
                self.switch(plan, ruling.adoption)

    def switch(self, plan: Plan, adoption: PlanAdopted) -> None:
        before = self.plan.version
        self.plan, self.current = plan, adoption
        log.info("plan_switched", adoption=adoption.id, from_version=before, to_version=plan.version,
                 rollback_of=adoption.rollback_of)  # not adopted_by: a person's name, never in logs
        for listener in self.listeners:
            try:  # one holder failing to take the plan (a ladder file gone) must not keep it from the others
                listener(plan, adoption)
            except Exception as exc:  # noqa: BLE001 - logged whole; the others and the book go on
                log.exception("plan_listener_failed", adoption=adoption.id, version=plan.version,
                              listener=getattr(listener, "__qualname__", repr(listener)), error=type(exc).__name__)

    async def switch_loop(self) -> None:
        """Once the topic is read to its end, the adoptions read folded at once (the plan switched once, not
        to every one before the last in force); then each new one as it comes."""
        await self.caught_up.wait()
        while True:
            self._wake.clear()
            try:
                await self.settle()
            except Exception as exc:  # noqa: BLE001 - a load that failed for this process's reasons: fold again
                log.exception("plan_settle_failed", error=type(exc).__name__)
                await asyncio.sleep(SETTLE_RETRY_S)
                self._wake.set()
                continue
            self.ready.set()
            await self._wake.wait()

    async def follow(self, bootstrap: str) -> None:
        await asyncio.gather(
            follow_from_start(bootstrap, [TopicPartition(PLAN_ADOPTIONS.name, 0)], self.apply_raw, self.caught_up,
                              "plan", self.progress),
            self.switch_loop(),
        )

    async def wait_ready(self, broker_wait_s: float, fold_wait_s: float = FOLD_WAIT_S) -> str | None:
        """Until the plan is the one the adoptions put in force: the topic read to its end (a broker slow to
        answer: at most broker_wait_s), then folded (local work: each accepted version's texts loaded once, a
        few tenths of a second each, so a long history takes longer than a broker's wait; at most fold_wait_s).
        None when ready; else which wait ran out ("broker" or "fold"), for the caller to say so and go on."""
        waits = [asyncio.ensure_future(self.caught_up.wait()), asyncio.ensure_future(self.ready.wait())]
        try:  # ready (set by whoever decided to go on) ends the wait too
            await asyncio.wait(waits, timeout=broker_wait_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if not (self.caught_up.is_set() or self.ready.is_set()):
            return "broker"
        try:
            await asyncio.wait_for(self.ready.wait(), fold_wait_s)
        except asyncio.TimeoutError:
            return "fold"
        return None

    def history(self) -> list[dict]:
        """Every adoption folded so far as the office reads it (without the texts), in log order, each with
        its status: in force, superseded, refused as a conflict, refused for its texts."""
        return history_rows(self.ruling)


def history_rows(ruling: Ruling) -> list[dict]:
    return [history_row(a, in_force=ruling.adoption is not None and a.id == ruling.adoption.id,
                        refused=ruling.refused.get(a.id)) for a in ruling.records]


STATUS_ZH = {"in_force": "生效中", "superseded": "已被取代", "conflict": "冲突未生效", "refused": "未能加载"}


def history_row(a: PlanAdopted, *, in_force: bool, refused: Refused | None = None) -> dict:
    status = ("in_force" if in_force else "superseded" if refused is None
              else "conflict" if refused.kind is Refusal.CONFLICT else "refused")
    return {"id": a.id, "version": a.version, "adopted_by": a.adopted_by, "adopted_at": a.adopted_at.isoformat(),
            "reason": a.reason, "previous_version": a.previous_version, "rollback_of": a.rollback_of,
            "whatif": a.whatif.model_dump(mode="json") if a.whatif else None, "files": sorted(a.files),
            "changes": [c.model_dump(mode="json") for c in a.changes], "changes_more": a.changes_more,
            "in_force": in_force, "status": status, "refused": refused.reason if refused else None,
            "in_force_when_read": refused.in_force if refused else None}


# --- the CLI's side: read the topic whole, write one record ---------------------------------------------------


def rollback_texts(ruling: Ruling, version: str, shipped: Plan) -> tuple[dict[str, str], str] | None:
    """What a rollback to `version` adopts again, and what it is a rollback of (`rollback_of`): the texts of the
    latest adoption of it that took effect, else the shipped plan's (SHIPPED); None: it was never in force. The
    CLI's `rollback` and POST /plan/rollbacks both ask it."""
    earlier = rollback_source(ruling, version)  # only a version that was in force: a refused one never was
    if earlier is not None:
        return dict(earlier.files), earlier.id
    if version == shipped.version:
        return plan_texts(DATA_DIR), SHIPPED
    return None


def in_force(adoptions: list[PlanAdopted], shipped: Plan) -> tuple[Ruling, Plan]:
    """The adoptions folded as every process folds them (playbooks.adoptions.rule) and the plan in force:
    the shipped one when none took effect."""
    plans = LoadedPlans(shipped)
    ruling = rule(adoptions, shipped=shipped.version, refusal=plans.refusal)
    return ruling, plans.plan(ruling.adoption)


def read_adoptions(bootstrap: str, *, timeout_s: float = 15) -> list[PlanAdopted]:
    """Every adoption on the log, in order (no consumer group: nothing committed)."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             request_timeout_ms=int(timeout_s * 1000), client_id="yingji-plan")
    try:
        tp = KTopicPartition(PLAN_ADOPTIONS.name, 0)
        if not consumer.partitions_for_topic(PLAN_ADOPTIONS.name):
            return []
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        out: list[PlanAdopted] = []
        seen: set[str] = set()
        while consumer.position(tp) < end:
            batch = consumer.poll(timeout_ms=int(timeout_s * 1000))
            if not batch:
                raise TimeoutError(f"{PLAN_ADOPTIONS.name}: nothing read within {timeout_s} s")
            for record in batch.get(tp, []):
                try:
                    adoption = PlanAdopted.model_validate_json(record.value)
                except (ValidationError, ValueError):
                    continue  # the processes log it; the CLI's history leaves it out
                if adoption.id not in seen:
                    seen.add(adoption.id)
                    out.append(adoption)
        return out
    finally:
        consumer.close(autocommit=False)


def publish_adoption(bootstrap: str, record: PlanAdopted) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=5)
    try:
        producer.send(PLAN_ADOPTIONS.name, key=record.id.encode(), value=record.model_dump_json().encode()).get(timeout=15)
    finally:
        producer.close()
