"""POST /plan/adoptions and /plan/rollbacks without a broker (issue 24 item 3): the office adopts from the page
as `yingji plan adopt` does; the record it writes names the version it replaces, the signed-in user, the reason
and the what-if's counts; what cannot be adopted is refused before anything is written (422 naming file, line
and field; 409 for the version in force or a page that shows a version no longer in force; 404 for a version
never in force), and only the office may. The what-if's read of the log is stood in for by an empty period
(the comparison on the local Kafka: tests/pages/test_whatif_page.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from playbooks.plan import DATA_DIR, load_plan
from playbooks.whatif import History
from services.clock import SimulatedClock
from services.plan_book import PlanBook, plan_texts
from services.settings import Settings
from services.users import new_token, user_record
from services.web.app import create_app
from tests.services.publishers import Kept
from topics.catalog import PLAN_ADOPTIONS
from topics.models import Role
from topics.plan import SHIPPED, PlanAdopted, adoption_id

NOW = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)
PLAN = load_plan()
GRADING = (DATA_DIR / "grading.yaml").read_text(encoding="utf-8")
OLD = "thresholds: {特别重大: 30, 重大: 10, 较大: 3}"
REVISED = GRADING.replace(OLD, "thresholds: {特别重大: 30, 重大: 10, 较大: 4}", 1)


@pytest.fixture
def api(tmp_path, monkeypatch):
    import services.whatif

    asked: list[tuple[datetime, datetime]] = []

    def empty_period(bootstrap, start, until, **_):
        asked.append((start, until))
        return History(start=start, until=until)

    monkeypatch.setattr(services.whatif, "read_history", empty_period)
    book = PlanBook(PLAN)
    book.ready.set()
    kept = Kept()
    app = create_app(Settings(data_dir=tmp_path, bootstrap_servers="127.0.0.1:1"), clock=SimulatedClock(NOW, 0.0),
                     publisher=kept, plans=book)
    tokens = {}
    for role in Role:
        tokens[role] = new_token()
        app.state.users.apply(user_record(f"u-{role.value}", role, tokens[role], now=NOW, by="test"))
    client = TestClient(app)
    client.tokens, client.kept, client.book, client.asked = tokens, kept, book, asked
    return client


def adopt(api, files=(("grading.yaml", REVISED),), role=Role.ADMIN, **data):
    form = {"reason": "较大事故死亡人数阈值调整（试行）", "previous_version": PLAN.version, **data}
    return api.post("/plan/adoptions", files=[("files", (n, t.encode(), "application/yaml")) for n, t in files],
                    data=form, headers={"Authorization": f"Bearer {api.tokens[role]}"})


def rollback(api, body, role=Role.ADMIN):
    return api.post("/plan/rollbacks", json=body, headers={"Authorization": f"Bearer {api.tokens[role]}"})


def test_an_adoption_is_written_against_the_version_the_page_showed_with_its_whatif(api):
    resp = adopt(api, whatif_days="7")
    assert resp.status_code == 202, resp.text
    [(topic, key, record)] = api.kept.records
    assert topic == PLAN_ADOPTIONS.name and key == record.id == resp.json()["id"]
    revised = {**plan_texts(DATA_DIR), "grading.yaml": REVISED}
    assert record.files == revised and record.version == resp.json()["version"] != PLAN.version
    assert (record.previous_version, record.adopted_by, record.adopted_at) == (PLAN.version, "u-admin", NOW)
    assert record.reason == "较大事故死亡人数阈值调整（试行）" and record.rollback_of is None
    assert (record.whatif.period_from, record.whatif.period_to) == (NOW - timedelta(days=7), NOW) == api.asked[0]
    assert record.whatif.plan_in_force == PLAN.version and record.whatif.incidents == 0
    assert resp.json()["whatif"]["incidents"] == 0
    # what it changes, field by field, kept with it (playbooks.plan_diff): the one threshold
    assert [(c.file, c.path, c.change, c.before, c.after) for c in record.changes] == [
        ("grading.yaml", "families.production_safety.criteria[deaths_incl_missing].thresholds.较大", "changed", "3", "4")]
    assert record.changes_more == 0
    assert api.book.adoptions == []  # not applied here: the book takes it from the log, in the log's order


def test_the_whatif_period_defaults_to_the_clis_thirty_days(api):
    assert adopt(api).status_code == 202
    assert api.asked == [(NOW - timedelta(days=30), NOW)]


@pytest.mark.parametrize("files, data, field, says", [
    pytest.param([("notes.yaml", "a: 1\n")], {}, "files.0", "not a file of the plan", id="unknown file"),
    pytest.param([("grading.yaml", REVISED.replace(OLD.replace("3}", "4}"), OLD.replace("3}", "many}")))], {},
                 "files", "grading.yaml, line", id="does not load: file, line and field"),
    pytest.param([("grading.yaml", REVISED)], {"reason": ""}, "reason", "required", id="no reason"),
    pytest.param([("grading.yaml", REVISED)], {"reason": "  "}, "reason", "say why", id="a blank reason"),
    pytest.param([("grading.yaml", REVISED)], {"previous_version": "latest"}, "previous_version", "pattern",
                 id="no version"),
    pytest.param([("grading.yaml", REVISED)], {"whatif_days": "0"}, "whatif_days", "greater than", id="no days"),
])
def test_what_cannot_be_adopted_is_refused_naming_the_field_and_nothing_is_written(api, files, data, field, says):
    resp = adopt(api, files, **data)
    assert resp.status_code == 422, resp.text
    got = {f["field"]: f["message"] for f in resp.json()["fields"]}
    assert field in got and says in got[field], got
    assert api.kept.records == []


def test_a_revision_that_does_not_load_names_the_line_and_the_field(api):
    broken = REVISED.replace("较大: 4}", "较大: many}", 1)
    line = next(i for i, text in enumerate(broken.splitlines(), 1) if "较大: many" in text)
    resp = adopt(api, [("grading.yaml", broken)])
    problems = [f["message"] for f in resp.json()["fields"] if f["field"] == "files"]
    assert any(p.startswith(f"grading.yaml, line {line}:") and "thresholds" in p for p in problems), problems
    assert not any("yingji-adopt-" in p for p in problems)


def test_the_version_in_force_is_refused(api):
    resp = adopt(api, [("grading.yaml", GRADING)])
    assert resp.status_code == 409, resp.text
    assert resp.json()["fields"][0]["field"] == "files" and "in force already" in resp.json()["fields"][0]["message"]
    assert api.kept.records == []


def test_a_page_showing_a_version_no_longer_in_force_is_refused_before_anything_is_written(api):
    resp = adopt(api, previous_version="0123456789ab")
    assert resp.status_code == 409, resp.text
    assert resp.json()["fields"][0]["field"] == "previous_version"
    assert f"{PLAN.version} is" in resp.json()["fields"][0]["message"] and api.kept.records == []


async def test_a_rollback_adopts_again_the_texts_of_a_version_that_was_in_force(api):
    book = api.book
    revised_texts = {**plan_texts(DATA_DIR), "grading.yaml": REVISED}
    first = PlanAdopted(id=adoption_id("x", NOW), version=_version(revised_texts), files=revised_texts,
                        adopted_by="u-admin", adopted_at=NOW, reason="试行", previous_version=PLAN.version)
    book.apply(first)
    await book.settle()
    assert api.app.state.plan.version == first.version
    # back to the shipped plan
    resp = rollback(api, {"version": PLAN.version, "reason": "试行结束", "previous_version": first.version})
    assert resp.status_code == 202, resp.text
    [(_, _, record)] = api.kept.records
    assert (record.version, record.rollback_of, record.previous_version) == (PLAN.version, SHIPPED, first.version)
    assert record.files == plan_texts(DATA_DIR) and record.whatif is None and record.adopted_by == "u-admin"
    assert [(c.path, c.before, c.after) for c in record.changes] == [  # going back changes it back
        ("families.production_safety.criteria[deaths_incl_missing].thresholds.较大", "4", "3")]
    # to the version in force: 409; to one never in force: 404; from a page showing an older version: 409
    assert rollback(api, {"version": first.version, "reason": "r", "previous_version": first.version}).status_code == 409
    assert rollback(api, {"version": "0123456789ab", "reason": "r", "previous_version": first.version}).status_code == 404
    stale = rollback(api, {"version": PLAN.version, "reason": "r", "previous_version": PLAN.version})
    assert stale.status_code == 409 and stale.json()["fields"][0]["field"] == "previous_version"
    assert len(api.kept.records) == 1
    # and GET /plan's history shows what each adoption changed
    book.apply(record)
    await book.settle()
    history = api.get("/plan", headers={"Authorization": f"Bearer {api.tokens[Role.VIEWER]}"}).json()["history"]
    assert [len(h["changes"]) for h in history] == [0, 1]  # the first written by hand, without them
    assert history[1]["changes"][0]["before"] == "4" and history[1]["changes_more"] == 0


async def test_a_rollback_to_an_adoption_goes_back_to_its_texts_and_names_it(api):
    book = api.book
    revised_texts = {**plan_texts(DATA_DIR), "grading.yaml": REVISED}
    first = PlanAdopted(id="adopt-1", version=_version(revised_texts), files=revised_texts, adopted_by="u-admin",
                        adopted_at=NOW, reason="试行", previous_version=PLAN.version)
    back = PlanAdopted(id="back-1", version=PLAN.version, files=plan_texts(DATA_DIR), adopted_by="u-admin",
                       adopted_at=NOW, reason="回退", previous_version=first.version, rollback_of=SHIPPED)
    for a in (first, back):
        book.apply(a)
    await book.settle()
    resp = rollback(api, {"version": first.version, "reason": "再行试用", "previous_version": PLAN.version})
    assert resp.status_code == 202, resp.text
    assert resp.json()["rollback_of"] == "adopt-1" and api.kept.records[0][2].files == revised_texts


def test_a_replica_still_reading_the_adoptions_answers_503(api):
    api.book.ready.clear()
    resp = adopt(api)
    assert resp.status_code == 503 and resp.headers["Retry-After"], resp.text
    assert rollback(api, {"version": PLAN.version, "reason": "r", "previous_version": PLAN.version}).status_code == 503


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.ADMIN])
def test_only_the_plan_office_adopts_and_rolls_back(api, role):
    assert adopt(api, role=role).status_code == 403
    assert rollback(api, {"version": PLAN.version, "reason": "r", "previous_version": PLAN.version},
                    role=role).status_code == 403
    assert api.kept.records == []


def test_a_revision_of_the_largest_files_is_read_not_refused_for_its_size(api):
    files = [(n, (DATA_DIR / n).read_text(encoding="utf-8")) for n in ("incident_types.yaml", "units.yaml",
                                                                         "command.yaml")]
    files.append(("grading.yaml", REVISED))
    assert sum(len(t.encode()) for _, t in files) > 64 * 1024
    assert adopt(api, files).status_code == 202


def _version(texts: dict[str, str]) -> str:
    from playbooks.adoptions import texts_version

    return texts_version(texts)


@pytest.mark.parametrize("files", [
    pytest.param([("files", ("blob", b"\x00\x01", "application/octet-stream"))], id="a file of no plan's name"),
    pytest.param([("files", ("grading.yaml", b"families: 3\n", "application/octet-stream"))], id="junk of a plan's name"),
    pytest.param([], id="no file"),
])
def test_what_a_fuzzer_sends_even_as_the_office_adopts_nothing(api, files):
    """tests/e2e/test_fuzz.py signs in as a duty officer or a commander (403 here); even as the office, random
    files are refused before anything is written: the session's shared plan is never changed by it."""
    resp = api.post("/plan/adoptions", files=files or None, data={"reason": "x", "previous_version": PLAN.version},
                    headers={"Authorization": f"Bearer {api.tokens[Role.ADMIN]}"})
    assert resp.status_code == 422, resp.text
    assert api.kept.records == []


async def test_a_revision_over_an_adoption_of_before_the_grid_was_a_plan_file_carries_the_grid_in_force(api):
    """The adoption in force was written before district_grid.yaml was a plan file, and renamed a street: a revision
    over it (the page uploads only what it changes) is validated and written with the grid that adoption is in force
    with (the shipped one fitted to its streets), not refused for the shipped grid's old name."""
    from tests.services.test_plan_book import _old_texts

    old_texts, old_version = _old_texts(plan_texts(DATA_DIR), "units.yaml", "    name: 中仓街道\n", "    name: 中仓新街道\n")
    api.book.apply(PlanAdopted(id="old-1", version=old_version, files=old_texts, adopted_by="u-admin", adopted_at=NOW,
                               reason="旧版采纳", previous_version=PLAN.version))
    await api.book.settle()
    assert api.book.plan.version == old_version
    resp = adopt(api, previous_version=old_version)
    assert resp.status_code == 202, resp.text
    [(_, _, record)] = api.kept.records
    assert "中仓新街道" in record.files["district_grid.yaml"] and record.files["grading.yaml"] == REVISED
    assert [c.file for c in record.changes] == ["grading.yaml"]  # the grid written out is the one in force


async def test_the_files_in_force_sent_again_over_an_adoption_of_before_the_grid_are_nothing_to_adopt(api):
    """Over an adoption written before district_grid.yaml was a plan file, a revision is written with the grid in force
    (another version of the same texts): its own grading.yaml sent again is still 409, not a new adoption."""
    from tests.services.test_plan_book import _old_texts

    old_texts, old_version = _old_texts(plan_texts(DATA_DIR))
    api.book.apply(PlanAdopted(id="old-2", version=old_version, files=old_texts, adopted_by="u-admin", adopted_at=NOW,
                               reason="旧版采纳", previous_version=PLAN.version))
    await api.book.settle()
    resp = adopt(api, files=(("grading.yaml", old_texts["grading.yaml"]),), previous_version=old_version)
    assert resp.status_code == 409 and resp.json()["fields"][0]["field"] == "files", resp.text
    assert api.kept.records == []
