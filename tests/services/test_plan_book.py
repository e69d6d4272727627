"""The plan's adoptions followed without a broker (issue 24 item 3): the book switches to the adoption in force
(compare-and-set in log order: one written against a version no longer in force is refused as a conflict and
the plan stays), loads each version once, refuses texts that are not their version, rolls back from its cache; the worker decides its first record only once the book is ready, and each record after a switch
under the revision (the agent under `test_context`, as tests/services/test_incident_agent.py drives it)."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from playbooks.plan import DATA_DIR, Plan, load_plan
from services.clock import SimulatedClock
from services.plan_book import PlanBook, plan_of, plan_texts, with_changes
from services.settings import Settings
from services.worker.root import build_worker
from services.worker.table_codec import decode_state
from tests.playbooks.test_plan_switch import GAS_LEAD
from tests.services.test_incident_agent import NOW, PLAN, Produced, TopicSends, process, ready_book, reported, sent
from topics.catalog import INCIDENT_EVENTS, INCIDENTS_DECIDED
from topics.models import IncidentDecided, IncidentEvent
from topics.plan import SHIPPED, PlanAdopted, adoption_id


@pytest.fixture(scope="module")
def revision_dir(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("plan") / "revised"
    shutil.copytree(DATA_DIR, data)
    types = data / "incident_types.yaml"
    text = types.read_text(encoding="utf-8")
    assert text.count(GAS_LEAD) == 1
    types.write_text(text.replace(GAS_LEAD, GAS_LEAD.replace("district_urban_management_commission",
                                                              "district_emergency_bureau")), encoding="utf-8")
    return data


@pytest.fixture(scope="module")
def revised(revision_dir) -> Plan:
    return load_plan(revision_dir)


def adoption(files: dict[str, str], version: str, n: int, rollback_of: str | None = None, *,
             against: str = PLAN.version) -> PlanAdopted:
    """Written against `against`: the version its writer read in force."""
    at = NOW + timedelta(minutes=n)
    return PlanAdopted(id=adoption_id(version, at), version=version, files=files, adopted_by="预案管理科 王某",
                       adopted_at=at, reason="试行修订", rollback_of=rollback_of, previous_version=against)


class CountingLoad:
    def __init__(self) -> None:
        self.loaded: list[str] = []

    def __call__(self, a: PlanAdopted) -> Plan:
        self.loaded.append(a.id)
        return plan_of(a)


def test_texts_written_back_are_the_same_version(revision_dir, revised):
    assert plan_of(adoption(plan_texts(revision_dir), revised.version, 1)).version == revised.version
    assert plan_of(adoption(plan_texts(DATA_DIR), PLAN.version, 1)).version == PLAN.version


def test_an_adoption_written_before_the_grid_was_a_plan_file_loads_as_its_version_with_the_shipped_grid(
        revision_dir, revised):
    """district_grid.yaml became a plan file after adoptions were on the log: their texts have none. They load as
    the version they were (the grid is read from the shipped plan's, as the web service's was then, and is not part
    of their digest), not refused as 未能加载, which would put the shipped plan back in force on the upgrade."""
    import hashlib

    old_texts = {name: text for name, text in plan_texts(revision_dir).items() if name != "district_grid.yaml"}
    digest = hashlib.sha256()
    for name in sorted(old_texts):
        digest.update(old_texts[name].encode("utf-8"))
    old_version = digest.hexdigest()[:12]
    assert old_version != revised.version  # the grid's text is part of a version written now
    plan = plan_of(adoption(old_texts, old_version, 1))
    assert plan.version == old_version and plan.district_grid == PLAN.district_grid
    assert plan.types["gas_accident"].lead_units == revised.types["gas_accident"].lead_units


def _old_texts(texts: dict[str, str], file: str = "", old: str = "", new: str = "") -> tuple[dict[str, str], str]:
    """An adoption's texts as written before the grid was a plan file (none), with one edit; and their version."""
    import hashlib

    out = {name: text for name, text in texts.items() if name != "district_grid.yaml"}
    if file:
        assert old in out[file], (file, old)
        out[file] = out[file].replace(old, new, 1)
    digest = hashlib.sha256()
    for name in sorted(out):
        digest.update(out[name].encode("utf-8"))
    return out, digest.hexdigest()[:12]


async def test_old_adoptions_that_renamed_or_added_a_street_still_load_and_the_chain_after_them_stays_in_force():
    """Before the grid was a plan file, a revision could rename or add a street (the map only logged it): such an
    adoption on the log loads as its version with the shipped grid fitted to its streets (a renamed one under its
    new name, an added one in a free cell), so it is not refused on the upgrade, nor every adoption after it as a
    conflict, which would have put an older plan back in force."""
    shipped = plan_texts(DATA_DIR)
    t1, v1 = _old_texts(shipped, "units.yaml", "    name: 中仓街道\n", "    name: 中仓新街道\n")
    t2, v2 = _old_texts(t1, "units.yaml", "  - id: street_zhongcang\n",
                        "  - id: street_xincheng\n    name: 新城街道\n    kind: street\n    aliases: []\n"
                        "    section: \"2.4\"\n  - id: street_zhongcang\n")
    t3, v3 = _old_texts(t2, "grading.yaml", "thresholds: {特别重大: 30, 重大: 10, 较大: 3}",
                        "thresholds: {特别重大: 30, 重大: 10, 较大: 4}")
    book = PlanBook(PLAN)
    for n, (texts, version, against) in enumerate([(t1, v1, PLAN.version), (t2, v2, v1), (t3, v3, v2)], 1):
        book.apply(adoption(texts, version, n, against=against))
    await book.settle()
    assert book.plan.version == v3 and book.refused == {}
    grid = book.plan.district_grid
    assert grid.cells["street_zhongcang"].name == "中仓新街道"
    free = {(c.col, c.row) for uid, c in PLAN.district_grid.cells.items()}
    new = grid.cells["street_xincheng"]
    assert new.name == "新城街道" and (new.col, new.row) not in free and new.row < grid.rows
    assert grid.problems(book.plan.streets.values()) == []


async def test_the_book_switches_to_the_last_adoption_and_back_from_its_cache(revision_dir, revised):
    load = CountingLoad()
    book = PlanBook(PLAN, load=load)
    seen: list[str] = []
    book.listeners.append(lambda plan, a: seen.append(plan.version))
    first = adoption(plan_texts(revision_dir), revised.version, 1)
    book.apply(first)
    book.apply(first)  # a retried send: once
    await book.settle()
    assert book.plan.version == revised.version and book.current == first and seen == [revised.version]
    await book.settle()  # nothing new: no second switch
    assert seen == [revised.version]
    back = adoption(plan_texts(DATA_DIR), PLAN.version, 2, rollback_of=SHIPPED, against=revised.version)
    book.apply(back)
    await book.settle()
    assert book.plan is PLAN and seen == [revised.version, PLAN.version]
    again = adoption(plan_texts(revision_dir), revised.version, 3)
    book.apply(again)
    await book.settle()
    assert book.plan.version == revised.version and load.loaded == [first.id]  # from its cache the second time
    assert [row["in_force"] for row in book.history()] == [False, False, True]


async def test_texts_that_are_not_their_version_are_refused_and_the_plan_stays(revision_dir, revised):
    book = PlanBook(PLAN)
    bad = adoption(plan_texts(revision_dir), "000000000000", 1)
    book.apply(bad)
    await book.settle()
    assert book.plan is PLAN and book.current is None
    assert "000000000000" in book.refused[bad.id] and book.history()[0]["refused"]
    assert book.history()[0]["status"] == "refused"


async def test_two_adoptions_against_the_same_version_the_second_is_refused_and_the_plan_stays(revision_dir, revised,
                                                                                                 tmp_path):
    other_dir = tmp_path / "other"
    shutil.copytree(DATA_DIR, other_dir)
    grading = other_dir / "grading.yaml"
    grading.write_text(grading.read_text(encoding="utf-8") + "\n# 另一修订稿\n", encoding="utf-8")
    other = load_plan(other_dir)
    book = PlanBook(PLAN)
    seen: list[str] = []
    book.listeners.append(lambda plan, a: seen.append(plan.version))
    first = adoption(plan_texts(revision_dir), revised.version, 1)
    second = adoption(plan_texts(other_dir), other.version, 2)  # written against the shipped plan too
    book.apply(first)
    await book.settle()
    book.apply(second)
    await book.settle()
    assert book.plan.version == revised.version and book.current == first and seen == [revised.version]
    assert book.refused[second.id] == f"written against version {PLAN.version} while {revised.version} was in force"
    rows = {r["id"]: r for r in book.history()}
    assert (rows[first.id]["status"], rows[second.id]["status"]) == ("in_force", "conflict")
    assert rows[second.id]["in_force_when_read"] == revised.version
    # a book that reads both at once (a replica started later) decides the same
    late = PlanBook(PLAN)
    late.apply(first)
    late.apply(second)
    await late.settle()
    assert late.current == first and late.history() == book.history()
    # written against the version in force: it takes effect
    third = adoption(plan_texts(other_dir), other.version, 3, against=revised.version)
    book.apply(third)
    await book.settle()
    assert book.plan.version == other.version and seen == [revised.version, other.version]
    assert [r["status"] for r in book.history()] == ["superseded", "conflict", "in_force"]


async def test_read_to_its_end_first_then_switched_once(revision_dir, revised):
    load = CountingLoad()
    book = PlanBook(PLAN, load=load)
    loop = asyncio.create_task(book.switch_loop())
    try:
        for n in range(3):  # adopted, rolled back, adopted again: read before the book caught up
            texts, version = (plan_texts(revision_dir), revised.version) if n % 2 == 0 else (plan_texts(DATA_DIR), PLAN.version)
            book.apply(adoption(texts, version, n, against=revised.version if n % 2 else PLAN.version))
            await asyncio.sleep(0.01)
        assert book.plan is PLAN and not book.ready.is_set() and load.loaded == []
        book.caught_up.set()
        await asyncio.wait_for(book.ready.wait(), 10)
        # switched once, to the one in force; each version's texts loaded once (the shipped plan's never)
        assert book.plan.version == revised.version and book.current == book.adoptions[-1]
        assert load.loaded == [book.adoptions[0].id]
        book.apply(adoption(plan_texts(DATA_DIR), PLAN.version, 9, rollback_of=SHIPPED,  # then live, as it comes
                            against=revised.version))
        async with asyncio.timeout(10):
            while book.plan is not PLAN:
                await asyncio.sleep(0.01)
    finally:
        loop.cancel()


@pytest.fixture
async def book_worker(tmp_path):
    produced = Produced()
    settings = Settings(data_dir=tmp_path, app_id="yingji-test", stall_restart_s=0)
    book = PlanBook(PLAN)
    built = build_worker(settings, clock=SimulatedClock(start=NOW, speed=0.0), store="memory://",
                         produce=produced.produce, sensors=False, duty=ready_book(settings), plans=book)
    built.app.loop = asyncio.get_running_loop()
    built.app.finalize()
    async with built.agent.test_context() as agent:
        yield built, agent, produced


async def test_the_worker_decides_under_the_adopted_plan_from_its_first_record(book_worker, revision_dir, revised):
    worker, agent, produced = book_worker
    book = worker.plans
    assert worker.plan is PLAN and worker.adopt in book.listeners
    book.apply(adoption(plan_texts(revision_dir), revised.version, 1))  # on the log before the worker started
    first = asyncio.ensure_future(process(agent, reported().model_dump_json().encode()))
    await asyncio.sleep(0.2)
    assert not first.done() and TopicSends(produced, INCIDENTS_DECIDED.name).records == []  # waits for the book
    await book.settle()
    book.ready.set()
    await asyncio.wait_for(first, 10)
    [(_, decided)] = sent(TopicSends(produced, INCIDENTS_DECIDED.name), IncidentDecided)
    assert decided.decision.plan_version == revised.version
    assert decided.decision.lead_unit_ids == ["district_emergency_bureau"]
    assert worker.schedule.stale  # switched: the due schedule is rebuilt under the revision


async def test_an_incident_open_at_a_switch_keeps_its_obligations_and_its_timeline_says_so(book_worker, revision_dir,
                                                                                          revised):
    from topics.catalog import INCIDENT_COMMANDS
    from topics.models import IncidentCommand, ReportFiled

    worker, agent, produced = book_worker
    book = worker.plans
    book.ready.set()
    rec = reported()
    await process(agent, rec.model_dump_json().encode())
    before = decode_state(worker.table[rec.incident_id])
    assert before.decision.plan_version == PLAN.version
    book.apply(adoption(plan_texts(revision_dir), revised.version, 1))
    await book.settle()
    assert worker.plan.version == revised.version
    filing = IncidentCommand(id="c-after", incident_id=rec.incident_id, body=ReportFiled(
        id="f-after", incident_id=rec.incident_id, kind="phone_report", unit_id="district_urban_management_commission",
        filed_at=NOW + timedelta(minutes=2), filed_by="值班员"))
    await process(agent, filing.model_dump_json().encode(), topic=INCIDENT_COMMANDS.name)
    events = [e for _, e in sent(TopicSends(produced, INCIDENT_EVENTS.name), IncidentEvent)]
    notes = [e for e in events if e.kind.value == "plan_switched"]
    assert [(n.details["from_version"], n.details["to_version"]) for n in notes] == [(PLAN.version, revised.version)]
    after = decode_state(worker.table[rec.incident_id])
    assert {k: o.obligation for k, o in after.obligations.items()} == {k: o.obligation for k, o in before.obligations.items()}
    assert after.obligations["phone_report"].status == "met" and after.plan_version == revised.version


async def test_the_api_answers_under_the_plan_its_book_switched_to(tmp_path, revision_dir, revised):
    """No broker (no lifespan): the book's switch is what GET /plan and the routes' plan show; /healthz is not
    ready until the book is."""
    from fastapi.testclient import TestClient

    from services.users import new_token, user_record
    from services.web.app import create_app
    from topics.models import Role

    book = PlanBook(PLAN)
    app = create_app(Settings(data_dir=tmp_path, bootstrap_servers="127.0.0.1:1"), plans=book)
    token = new_token()
    app.state.users.apply(user_record("viewer", Role.VIEWER, token, now=NOW, by="test"))
    client = TestClient(app)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/healthz").json()["plan_caught_up"] is False
    first = adoption(plan_texts(revision_dir), revised.version, 1)
    book.apply(first)
    await book.settle()
    book.ready.set()
    assert app.state.plan is book.plan and app.state.plan.version == revised.version
    body = client.get("/plan", headers=headers).json()
    assert (body["version"], body["adoption"], body["shipped_version"]) == (revised.version, first.id, PLAN.version)
    assert [h["id"] for h in body["history"]] == [first.id] and body["history"][0]["in_force"]
    assert "files" in body["history"][0] and "units.yaml" in body["history"][0]["files"]  # names, not the texts
    assert client.get("/healthz").json()["plan_caught_up"] is True
    assert client.get("/plan").status_code == 401


async def test_a_report_accepted_under_a_revision_the_worker_has_not_switched_to_is_decided_not_dead_lettered(
        book_worker, tmp_path):
    """The API switched first (its book read the adoption) and accepted a report of a type only the revision
    knows; this worker's book has the adoption but has not switched yet: it reads on, switches and decides."""
    from topics.catalog import DEAD_LETTERS

    data = tmp_path / "renamed"
    shutil.copytree(DATA_DIR, data)
    types = data / "incident_types.yaml"
    types.write_text(types.read_text(encoding="utf-8").replace("name: 燃气事故", "name: 城镇燃气事故", 1), encoding="utf-8")
    renamed = load_plan(data)
    worker, agent, produced = book_worker
    book = worker.plans
    book.ready.set()
    rec = reported()
    rec = rec.model_copy(update={"report": rec.report.model_copy(update={"type": "城镇燃气事故"})})
    book.apply(adoption(plan_texts(data), renamed.version, 1))  # read by the book, not yet switched to
    assert worker.plan.version == PLAN.version
    await process(agent, rec.model_dump_json().encode())
    assert TopicSends(produced, DEAD_LETTERS.name).records == []
    [(_, decided)] = sent(TopicSends(produced, INCIDENTS_DECIDED.name), IncidentDecided)
    assert decided.decision.plan_version == renamed.version and decided.decision.type_name == "城镇燃气事故"


async def test_a_holder_failing_to_take_the_plan_keeps_it_from_no_other_nor_from_later_adoptions(revision_dir, revised):
    """A listener that raises (the delivery stage's ladder file gone, say) is logged; the others still switch, and
    the book goes on to the next adoption (before, the exception ended the switch loop for good)."""
    book = PlanBook(PLAN)
    seen: list[str] = []

    def broken(plan, a):
        raise FileNotFoundError("ladder.yaml")

    book.listeners += [broken, lambda plan, a: seen.append(plan.version)]
    book.apply(adoption(plan_texts(revision_dir), revised.version, 1))
    await book.settle()
    assert book.plan.version == revised.version and seen == [revised.version]
    book.apply(adoption(plan_texts(DATA_DIR), PLAN.version, 2, rollback_of=SHIPPED, against=revised.version))
    await book.settle()
    assert book.plan.version == PLAN.version and seen == [revised.version, PLAN.version]


async def test_texts_that_could_not_be_written_out_are_tried_again_not_refused(revision_dir, revised):
    """An OSError loading an adoption's texts is this process's trouble (a full disk), not a verdict on the texts
    every reader would share: nothing of the ruling is shown, and the next fold takes the adoption."""
    failing = [True]

    def load(a: PlanAdopted) -> Plan:
        if failing[0]:
            raise OSError(28, "No space left on device")
        return plan_of(a)

    book = PlanBook(PLAN, load=load)
    first = adoption(plan_texts(revision_dir), revised.version, 1)
    book.apply(first)
    with pytest.raises(OSError):
        await book.settle()
    assert book.plan.version == PLAN.version and book.refused == {} and book.history() == []
    failing[0] = False
    await book.settle()
    assert book.plan.version == revised.version and book.current == first and book.refused == {}


async def test_a_long_fold_is_waited_for_past_the_brokers_wait_and_a_silent_broker_is_not():
    """A process waits for its book: the broker's answer at most broker_wait_s, then the fold of what it read
    (each accepted version loaded once: a long history takes longer than a broker's wait) at most fold_wait_s."""
    book = PlanBook(PLAN)
    assert await book.wait_ready(0.05, 1) == "broker"  # nothing read: the broker's wait ran out
    book.caught_up.set()

    async def fold_done_later():
        await asyncio.sleep(0.3)
        book.ready.set()

    later = asyncio.ensure_future(fold_done_later())
    assert await book.wait_ready(0.05, 5) is None  # waited 0.3 s for the fold, past the broker's 0.05
    await later
    slow = PlanBook(PLAN)
    slow.caught_up.set()
    assert await slow.wait_ready(0.05, 0.1) == "fold"


def test_a_record_the_topic_would_not_take_is_refused_naming_its_size_and_changes_are_kept_only_as_far_as_they_fit(
        tmp_path):
    """The texts' limit counts their bytes, not their JSON escapes; the changes kept beside them add more. Every
    writer asks with_changes last: a record past what the topic takes is refused naming its size (the CLI's exit 2,
    the API's 422), not by the broker as a 503; when all its changes would not fit, as many are kept as fit and the
    rest counted. A record read back from the log is not refused for its size (one written before the check)."""
    from services.plan_book import RecordTooLarge
    from topics.plan import RECORD_MAX

    at = NOW
    escapes = PlanAdopted(id="big-1", version=PLAN.version, files={"units.yaml": "\x01" * (700 * 1024)},
                          adopted_by="预案管理科", adopted_at=at, reason="r")  # 700 KiB, six bytes each as JSON
    assert len(escapes.model_dump_json().encode()) > RECORD_MAX
    assert PlanAdopted.model_validate_json(escapes.model_dump_json()) == escapes  # read back: still read
    with pytest.raises(RecordTooLarge, match="bytes written, more than the topic takes"):
        with_changes(escapes, PLAN, PLAN)

    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    many = "".join(f"  - id: district_test_{i:03d}\n    name: 区测试{i}局{'很长的名称' * 10}\n    kind: department\n"
                   f"    aliases: []\n    section: \"1.3\"\n" for i in range(60))
    (data / "units.yaml").write_text((data / "units.yaml").read_text(encoding="utf-8") + many, encoding="utf-8")
    revised = load_plan(data)
    bare = PlanAdopted(id="big-2", version=revised.version, files={"units.yaml": "a"}, adopted_by="预案管理科",
                       adopted_at=at, reason="r")
    full = with_changes(bare, PLAN, revised)
    assert (len(full.changes), full.changes_more) == (50, 10)
    # texts within their own limit whose JSON leaves room for a few changes, not 50: ASCII and some escapes
    target = RECORD_MAX - len(bare.model_dump_json().encode()) - 8_000
    escaped = (target - 760 * 1024) // 5  # each \x01 six bytes as JSON, one as text
    record = bare.model_copy(update={"files": {"units.yaml": "a" * (760 * 1024 - escaped) + "\x01" * escaped}})
    kept = with_changes(record, PLAN, revised)
    assert 0 < len(kept.changes) < 50 and len(kept.changes) + kept.changes_more == 60
    assert len(kept.model_dump_json().encode()) <= RECORD_MAX
    assert kept.changes == full.changes[:len(kept.changes)]
    one_more = kept.model_copy(update={"changes": full.changes[:len(kept.changes) + 1]})
    assert len(one_more.model_dump_json().encode()) > RECORD_MAX  # as many as fit: not one more
