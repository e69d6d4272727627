"""Every part of the plan follows an adoption live (issue 24 item 3), not only the decisions: one revision that
changes duty.yaml, warnings.yaml, ledger.yaml, drills.yaml, channels.yaml, ladder.yaml and units.yaml, switched
to by a PlanBook driven here (`switch`, as its follow does on reading the log), and each process shown using
it. No broker: the API through TestClient with a recording publisher, the worker's 限期整改 timer through
its composition root, the delivery stage's composition with a recording producer and senders that accept."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from playbooks.plan import DATA_DIR, Plan, load_plan
from services.clock import SimulatedClock
from services.plan_book import PlanBook, plan_texts
from services.settings import Settings
from tests.services.publishers import Kept
from topics.plan import PlanAdopted, adoption_id

SHIPPED = load_plan()
OFFICE = "district_emergency_office"
WATER = "district_water_bureau"
NEW_UNIT = "district_test_bureau"

# (file, text in the shipped plan, the revision's); each text once in its file
EDITS = [
    ("duty.yaml", "{role: 值班领导, post: chief}", "{role: 值班领导, post: leader}"),
    ("ledger.yaml", "    role: 值班主任  # our choice: the owing unit's 值班主任 takes the reminder",
     "    role: 值班领导  # the revision: the owing unit's 值班领导 takes the reminder"),
    ("ledger.yaml", "hour_buckets_up_to_days: 2", "hour_buckets_up_to_days: 7"),
    ("warnings.yaml", "hq: hq_meteorological_disaster, department: district_meteorological_bureau,\n"
                      "     criteria: \"国家标准：", f"hq: hq_meteorological_disaster, department: {WATER},\n"
                                                    "     criteria: \"国家标准："),
    ("drills.yaml", "per_year: 1  # our choice: 定期", "per_year: 2  # the revision: 定期"),
    ("channels.yaml", "    levels: [一级, 二级]\n    channels: [wecom, dingtalk, sms, email]",
     "    levels: [一级, 二级]\n    channels: [email]"),
    ("channels.yaml", 'from_address: "yingji@localhost"', 'from_address: "yingji-rev@localhost"'),
    ("ladder.yaml", "  一级:\n    value: 3\n", "  一级:\n    value: 0.5\n"),
    ("units.yaml", "  - id: street_zhongcang\n    name: 中仓街道\n    kind: street\n    aliases: []",
     "  - id: street_zhongcang\n    name: 中仓街道\n    kind: street\n    aliases: [中仓]"),
    ("district_grid.yaml", "town_yongledian: {name: 永乐店镇, col: 3, row: 6}", "town_yongledian: {name: 永乐店镇, col: 3, row: 7}"),
]


def revise(data: Path) -> Path:
    shutil.copytree(DATA_DIR, data)
    for name, old, new in EDITS:
        path = data / name
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, (name, old)
        path.write_text(text.replace(old, new), encoding="utf-8")
    units = data / "units.yaml"
    units.write_text(units.read_text(encoding="utf-8") + f"  - id: {NEW_UNIT}\n    name: 区测试局\n    kind: department\n"
                                                          "    aliases: []\n    section: \"1.3\"\n", encoding="utf-8")
    return data


@pytest.fixture(scope="module")
def revision(tmp_path_factory) -> tuple[Plan, PlanAdopted]:
    data = revise(tmp_path_factory.mktemp("plan") / "revised")
    plan = load_plan(data)
    at = datetime(2026, 12, 7, 1, 0, tzinfo=timezone.utc)
    return plan, PlanAdopted(id=adoption_id(plan.version, at), version=plan.version, files=plan_texts(data),
                             adopted_by="预案管理科 王某", adopted_at=at, reason="试行修订")


def test_the_revision_is_one_plan_whose_parts_all_changed(revision):
    plan, _ = revision
    assert plan.version != SHIPPED.version
    assert plan.duty.post_for("值班领导", OFFICE) == (OFFICE, "leader") != SHIPPED.duty.post_for("值班领导", OFFICE)
    assert plan.ledger.chase.remind.role == "值班领导" and plan.warnings.category("rainstorm").department == WATER
    assert plan.channels.routes[0].channels == ["email"] and plan.ladder.minutes["一级"].value == 0.5
    assert plan.streets != SHIPPED.streets and NEW_UNIT in plan.units
    assert plan.district_grid.cells["town_yongledian"].row == 7 != SHIPPED.district_grid.cells["town_yongledian"].row


def test_a_revision_whose_ladder_is_not_its_duty_yaml_does_not_load(tmp_path):
    """The parts are checked together at load (what the delivery stage used to check alone at its start)."""
    from playbooks.plan import PlanError

    data = tmp_path / "bad"
    shutil.copytree(DATA_DIR, data)
    duty = data / "duty.yaml"
    duty.write_text(duty.read_text(encoding="utf-8").replace("{role: 值班主任, post: chief}",
                                                             "{role: 值班主任, post: leader}"), encoding="utf-8")
    with pytest.raises(PlanError) as refused:
        load_plan(data)
    assert any(p.file == "ladder.yaml" and p.field == "steps.value.0" and p.line for p in refused.value.problems), \
        refused.value.problems


# --- the API ---------------------------------------------------------------------------------------------------


def _water_draft() -> dict:
    start = datetime(2026, 12, 7, 10, 0, tzinfo=timezone.utc).isoformat()
    return {"warning_id": "w-live-1", "unit": WATER, "content": {
        "category": "rainstorm", "level": "blue", "start": start, "area": ["street_zhongcang"],
        "hazards": "预计未来6小时降雨量将达50毫米以上", "measures": ["collect", "analyse", "publish_forecast", "advise_public"],
        "issuer": WATER}}


def test_the_api_reads_every_part_of_the_plan_its_book_switched_to(tmp_path, revision):
    from services.users import new_token, user_record
    from services.web.app import create_app
    from topics.models import NotificationRequested, Role

    plan, adoption = revision
    now = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)
    book = PlanBook(SHIPPED)
    app = create_app(Settings(data_dir=tmp_path, bootstrap_servers="127.0.0.1:1"), plans=book, publisher=Kept(),
                     clock=SimulatedClock(start=now, speed=0.0))
    app.state.warnings.caught_up.set()
    token = new_token()
    app.state.users.apply(user_record("officer", Role.DUTY_OFFICER, token, now=now, by="test"))
    client = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    ledger_query = {"from": (now - timedelta(days=5)).isoformat(), "to": now.isoformat()}
    notice = NotificationRequested(id="n1", dedup_key="n1", incident_id="i-1", drill=False, unit_id=OFFICE, unit="区应急办",
                                   role="值班领导", kind="routing", why="测试", rule="r", section="4.1", requested_at=now)

    def unit_enum() -> list[str]:
        return client.get("/openapi.json").json()["components"]["schemas"]["FileReportRequest"]["properties"][
            "unit_id"]["enum"]

    def cross_system() -> str:
        rows = client.get("/drills/programme", params={"unit": OFFICE}).json()
        return json.dumps(rows, ensure_ascii=False)

    # under the shipped plan
    refused = client.post("/warnings", json=_water_draft())
    assert refused.status_code == 422 and "unit" in [f["field"] for f in refused.json()["fields"]], refused.text
    assert client.get("/ledger", params=ledger_query).json()["bucket"] == "day"
    assert "每年至少 1 次" in cross_system() or "每年 1 次" in cross_system()
    assert NEW_UNIT not in unit_enum()
    assert app.state.duty.address(notice).on_duty.post == "chief"
    the_map = app.state.district_map

    book.switch(plan, adoption)

    assert client.get("/plan").json()["version"] == plan.version
    # warnings.yaml: rainstorm is the water bureau's now, so its draft is taken
    assert client.post("/warnings", json=_water_draft()).status_code == 201
    # ledger.yaml: a five-day period is charted by hour under the revision's seven days
    assert client.get("/ledger", params=ledger_query).json()["bucket"] == "hour"
    # drills.yaml: the district's cross-system drill twice a year
    assert "2 次" in cross_system() and "每年至少 1 次" not in cross_system()
    # units.yaml in /openapi.json's vocabulary (made again, not the start's)
    assert NEW_UNIT in unit_enum()
    # duty.yaml in the duty book: 值班领导 is the leader's post now
    assert app.state.duty.address(notice).on_duty.post == "leader"
    # the board's map: its grid changed (永乐店镇 a row south), so it is made again from the revision
    assert app.state.district_map is not the_map and app.state.district_map.of(plan) is app.state.district_map


# --- the worker --------------------------------------------------------------------------------------------------


async def test_the_workers_rectification_timer_chases_by_the_revisions_ledger_and_duty_rules(tmp_path, revision):
    """ledger.yaml says whom to remind (值班领导 now) and duty.yaml which post that is (the leader now): the
    notice names 刘局长, not 孙主任 the 值班主任 the shipped plan would name."""
    from services.worker import rectification
    from services.worker.root import build_worker
    from tests.services.test_incident_agent import Produced, _duty_roster, ready_book
    from tests.services.test_rectification_timer import REMIND, a_book, sent, the_circular
    from topics.catalog import NOTIFICATIONS_REQUESTED

    plan, adoption = revision
    produced, plans = Produced(), PlanBook(SHIPPED)
    settings = Settings(data_dir=tmp_path, app_id="yingji-test", stall_restart_s=0)
    worker = build_worker(settings, clock=SimulatedClock(start=REMIND + timedelta(seconds=3), speed=0.0),
                          store="memory://", produce=produced.produce, sensors=False,
                          duty=ready_book(settings, _duty_roster()), circulars=a_book(the_circular()), plans=plans)
    worker.app.loop = asyncio.get_running_loop()
    plans.switch(plan, adoption)
    assert worker.plan is plan
    await rectification.check_rectifications(worker)
    to_office = next(n for n in sent(produced, NOTIFICATIONS_REQUESTED.name) if n["unit_id"] == OFFICE)
    assert (to_office["role"], to_office["on_duty"]["post"], to_office["on_duty"]["person_id"]) == (
        "值班领导", "leader", "boss1")


# --- the delivery stage ----------------------------------------------------------------------------------------


class Accepting:
    """A channel that takes every message, and keeps whom it was sent to."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, message):
        from services.delivery.channels import Accepted

        self.sent.append(message.dedup_key)
        return Accepted(provider_id="ok")


async def test_the_delivery_stage_takes_and_walks_notices_by_the_revisions_channels_and_ladder(tmp_path, revision):
    """A 一级 notice taken under the shipped plan went to sms and email and is not due a ladder step a minute on
    (3 minutes a step); once the revision is adopted, one taken goes to email only (its route), by the email
    sender built again for the revision's own email settings (another sender address), and the first is due
    its steps at once: 0.5 minutes a step (the stage looks at every notice it holds again on a switch)."""
    from services.delivery.main import follow_plans, stage_parts
    from services.delivery.stage import DeliveryStage, Partition
    from tests.services.test_delivery_stage_parts import KEY, PERSON, book_with, notice
    from services.delivery.compose import Composer
    from topics.catalog import DELIVERIES, NOTIFICATIONS_REQUESTED

    plan, adoption = revision
    settings = Settings(data_dir=tmp_path, local_sinks=False)
    plans, duty = PlanBook(SHIPPED), book_with([PERSON])
    channels, ladder = stage_parts(SHIPPED, settings, shipped=SHIPPED.version)
    written: list[dict] = []

    async def produce(topic: str, key: bytes, value: bytes, partition: int) -> None:
        if topic == DELIVERIES.name:
            written.append(json.loads(value)["body"])

    first = notice()
    clock = SimulatedClock(start=first.requested_at + timedelta(minutes=1), speed=0.0)
    senders = {"sms": Accepting(), "email": Accepting()}
    stage = DeliveryStage(bootstrap="127.0.0.1:1", group="g", channels=channels, ladder=ladder, senders=senders,
                          composer=Composer(channels=channels, duty=duty, built=set(senders), link_base="https://yj.example",
                                            ack_key=KEY), clock=clock, produce=produce)
    built: list[tuple[str, set[str]]] = []
    rebuilt = Accepting()

    def build(config, only: set[str]) -> dict:
        built.append((config.channel("email").smtp.from_address, only))
        return {"email": rebuilt}

    follow_plans(plans, settings, stage, duty, build)
    stage.parts[0] = Partition(ready=True)

    async def settle() -> None:
        await stage.tick()
        await asyncio.gather(*stage.tasks)
        await stage.tick()

    assert await stage.take(NOTIFICATIONS_REQUESTED.name, 0, first.model_dump_json().encode(), 0)
    await settle()
    [taken] = [r for r in written if r["record"] == "notice"]
    assert taken["channels"] == ["sms", "email"] and not [r for r in written if r["record"] == "ladder_step"]

    plans.switch(plan, adoption)
    assert stage.ladder is plan.ladder and duty.config is plan.duty
    assert built == [("yingji-rev@localhost", {"email"})] and stage.senders["email"] is rebuilt  # sms: as it was

    second = first.model_copy(update={"id": "i-1.n2", "dedup_key": "i-1.n2", "requested_at": clock.now()})
    assert await stage.take(NOTIFICATIONS_REQUESTED.name, 0, second.model_dump_json().encode(), 1)
    await settle()
    taken2 = next(r for r in written if r["record"] == "notice" and r["dedup_key"] == "i-1.n2")
    assert taken2["channels"] == ["email"] and rebuilt.sent == ["i-1.n2"]
    steps = [r for r in written if r["record"] == "ladder_step"]
    # the first notice's steps 1 and 2 are due by now (0.5 and 1 minute on); the second's first is not yet
    assert {s["dedup_key"] for s in steps} == {first.dedup_key} and {1, 2} <= {s["step"] for s in steps}


def test_the_settings_ladder_stands_for_the_shipped_plans_until_a_revision_brings_its_own(tmp_path, revision):
    import yaml

    from playbooks.delivery.ladder import LADDER_FILE
    from services.delivery.main import stage_parts

    plan, _ = revision
    raw = yaml.safe_load(LADDER_FILE.read_text(encoding="utf-8"))
    raw["default_minutes"]["value"] = 0.2
    fast = tmp_path / "ladder.yaml"
    fast.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    settings = Settings(data_dir=tmp_path, ladder_file=fast, local_sinks=False)
    assert stage_parts(SHIPPED, settings, shipped=SHIPPED.version)[1].default_minutes.value == 0.2
    assert stage_parts(plan, settings, shipped=SHIPPED.version)[1] == plan.ladder


def test_a_channel_the_revision_sets_whose_secret_is_missing_keeps_its_sender_and_the_rest_switches(tmp_path, revision):
    """At start a secret missing stops the stage; once it runs, a revision's channel it cannot build is left as it
    was (and logged), and the routes and the ladder switch all the same."""
    from services.delivery.channels import MissingSecret
    from services.delivery.compose import Composer
    from services.delivery.main import follow_plans, stage_parts
    from services.delivery.stage import DeliveryStage
    from tests.services.test_delivery_stage_parts import KEY, PERSON, book_with

    plan, adoption = revision
    settings = Settings(data_dir=tmp_path, local_sinks=False)
    plans, duty = PlanBook(SHIPPED), book_with([PERSON])
    channels, ladder = stage_parts(SHIPPED, settings, shipped=SHIPPED.version)
    email = Accepting()
    stage = DeliveryStage(bootstrap="127.0.0.1:1", group="g", channels=channels, ladder=ladder, senders={"email": email},
                          composer=Composer(channels=channels, duty=duty, built={"email"}, link_base="https://yj.example",
                                            ack_key=KEY), clock=SimulatedClock(start=datetime.now(timezone.utc)),
                          produce=None)  # type: ignore[arg-type] - nothing is written here

    def build(config, only: set[str]) -> dict:
        raise MissingSecret("channel email: YINGJI_SMTP_PASSWORD is not set, though its pair is")

    follow_plans(plans, settings, stage, duty, build)
    plans.switch(plan, adoption)
    assert stage.senders["email"] is email and stage.ladder is plan.ladder and stage.channels is not channels


async def test_the_delivery_stage_takes_no_notice_before_the_plans_adoptions_are_read(tmp_path):
    """As the worker's plans_ready: a restarted stage waits for the book (its last adoption switched to), and a
    broker slow to answer holds it back only so long."""
    from services.delivery.main import ready
    from tests.services.test_delivery_stage_parts import book_with

    duty, plans = book_with([]), PlanBook(SHIPPED)
    duty.caught_up.set()
    waiting = asyncio.ensure_future(ready(duty, plans))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    plans.caught_up.set()  # the topic read: now its fold
    await asyncio.sleep(0.2)
    assert not waiting.done()
    plans.ready.set()
    await asyncio.wait_for(waiting, 5)

    slow = PlanBook(SHIPPED)
    await asyncio.wait_for(ready(duty, slow, plan_wait_s=0.1), 5)  # goes on under the plan it has
