"""The what-if page (issue 24 item 1, 7.1.5 修订, 7.2.1 验证性演练): the office that keeps the plan uploads the
YAML files a revision changes, picks a period, and sees which live incidents of it would have been graded, led,
notified or breached differently had the revision been in force.

POST /whatif takes the changed files (multipart, each named as in playbooks/data), overlays them on the plan in
force's files (the last adoption's, issue 24 item 3, else the shipped ones), validates the result with the plan's
own loader (every problem naming file, line and field), reads the period's live records from the log with a plain consumer (no group, nothing written) and answers the
comparison of playbooks/whatif.py: JSON, or `format=xlsx` / `format=md` as `yingji whatif` writes them. Nothing
is stored: the report is a function of the log and the two plans, recomputed when asked again.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

import structlog
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from kafka.errors import KafkaError

from playbooks.drill.scenario import SCENARIOS_DIR, ScenarioError
from playbooks.plan import DATA_DIR
from playbooks.whatif import RevisionRefused, WhatIfReport, to_markdown
from services.plan_book import plan_texts
from services.web.answers import responses
from services.web.auth import require, require_page
from services.web.permissions import can
from services.web.publisher import BrokerUnavailable
from services.web.ledger_files import XLSX
from topics.models import EARLIEST, LATEST
from services.web.state import PagesDep, PlanDep, SettingsDep
from topics.models import UserRecord

log = structlog.get_logger("yingji", stage="whatif")
router = APIRouter(tags=["whatif"])
BEIJING = ZoneInfo("Asia/Shanghai")
# Our choice: a page's question is a quarter at most (a quarter of a busy district replays in seconds to a
# minute on two cores: README's what-if figures); a longer one is `yingji whatif`'s, which uses every core.
MAX_SPAN = timedelta(days=92)
MAX_FILE_BYTES = 1_000_000  # the whole shipped plan is 136 KB
MAX_FILES = 32
ADOPT_WHATIF_DAYS = 30  # an adoption's what-if: the last 30 days, as `yingji plan adopt --whatif-days`
READ_TIMEOUT_MS = 15_000


def in_force_texts(request: Request) -> dict[str, str]:
    """The plan in force's YAML files by name: the last adoption's (issue 24 item 3), else the shipped ones. An
    adoption written before district_grid.yaml was a plan file has none: the grid it is in force with (the shipped
    one fitted to its streets) is written out, so a revision over it carries a grid that fits and is checked."""
    plans = getattr(request.app.state, "plans", None)
    if plans is not None and plans.current is not None:
        texts = dict(plans.current.files)
        if "district_grid.yaml" not in texts:
            texts["district_grid.yaml"] = plans.plan.district_grid.as_yaml()
        return texts
    return plan_texts(DATA_DIR)


# File, not Form: the document then says multipart/form-data, which is what the route reads
Files = Annotated[list[UploadFile], File(description="the revision's changed YAML files, each named as in "
                                                     "playbooks/data (e.g. incident_types.yaml); the rest are the "
                                                     "plan in force's")]
# The drill scenarios shipped with the service (playbooks/drill/scenarios): a what-if may replay one's incidents
# instead of a period of the log (7.2.1 验证性演练: a revision tried on a scripted scenario before it is adopted)
SCENARIOS = {path.stem: path for path in sorted(SCENARIOS_DIR.glob("*.yaml"))}
Start = Annotated[datetime | None, Form(alias="from", description="the period's start, with its offset (or `scenario`)")]
End = Annotated[datetime | None, Form(alias="to", description="the period's end (excluded), with its offset")]
ScenarioName = Annotated[Literal[tuple(SCENARIOS)] | None, Form(  # type: ignore[valid-type]
    description="instead of a period of the log: a shipped drill scenario, its incidents as if live, and its "
                "expectations scored under both plans (7.2.1 验证性演练)")]
Format = Annotated[Literal["json", "xlsx", "md"], Form(description="json; xlsx: the sheets of `yingji whatif "
                                                                   "--format xlsx`; md: its Markdown")]


BASELINE_MAX = 50_000  # outcomes kept (a year's incidents); past it the store starts again (our choice)


class Busy:
    """One what-if at a time on a replica: a replay is a core's work, and the API serves the board meanwhile.
    Under its lock, the plan in force's outcomes are kept between questions (playbooks.whatif's baseline, keyed by
    version, incident, its records and the period's end): a page asking about another revision of the same
    period replays only the revised side (on a quiet core the busy night's lead-unit question 192 → 892
    simulated hours/s, `make bench-whatif`)."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self._baseline: dict = {}

    def baseline(self) -> dict:
        if len(self._baseline) > BASELINE_MAX:
            self._baseline.clear()
        return self._baseline


def replay_lock(request: Request) -> Busy:
    busy = getattr(request.app.state, "whatif_busy", None)
    if busy is None:
        busy = request.app.state.whatif_busy = Busy()
    return busy


def refused(*problems: tuple[tuple[str | int, ...], str]) -> RequestValidationError:
    """A 422 as FastAPI answers a form it refuses: each problem naming its field (body.from, body.files.0)."""
    return RequestValidationError([{"loc": ("body", *loc), "msg": msg, "type": "value_error"} for loc, msg in problems])


def check_period(start: datetime, end: datetime) -> None:
    for name, t in (("from", start), ("to", end)):
        if t.tzinfo is None:
            raise refused(((name,), "give the time with its offset (+08:00)"))
        if not EARLIEST <= t < LATEST:
            raise refused(((name,), "must be between 2000 and 2100"))
    if start >= end:
        raise refused((("from",), "must be before to"))
    if end - start > MAX_SPAN:
        raise refused((("to",), f"at most {MAX_SPAN.days} days after from on the page; `yingji whatif` for longer"))


async def overlay(files: list[UploadFile], base: dict[str, str], into: Path) -> list[str]:
    """The plan in force's files (`base`) with the uploaded ones over them, in `into`; the names of those
    replaced. A file not of the plan, twice, empty or too large is refused naming it (body.files[i])."""
    known = set(base)
    into.mkdir(parents=True)
    for name, text in base.items():
        (into / name).write_bytes(text.encode("utf-8"))
    seen: list[str] = []
    if not files:
        raise refused((("files",), "upload at least one of the plan's YAML files"))
    if len(files) > MAX_FILES:
        raise refused((("files",), f"at most {MAX_FILES} files"))
    for i, upload in enumerate(files):
        name = Path(upload.filename or "").name
        where = ("files", i)
        if name not in known:
            raise refused((where, f"{name or '(no name)'!r} is not a file of the plan: one of {', '.join(sorted(known))}"))
        if name in seen:
            raise refused((where, f"{name!r} uploaded twice"))
        data = await upload.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise refused((where, f"{name!r} is over {MAX_FILE_BYTES // 1000} KB"))
        if not data.strip():
            raise refused((where, f"{name!r} is empty"))
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise refused((where, f"{name!r} is not UTF-8 text")) from None
        (into / name).write_bytes(data)
        seen.append(name)
    return seen


@router.get("/whatif", responses={**responses(401, 403), 200: {"content": {"text/html": {}},
                                                              "description": "the what-if page"},
                                  303: {"description": "a browser not signed in: to /login, and back"}},
            response_class=Response)
async def whatif_page(request: Request, plan: PlanDep, pages: PagesDep,
                      who: UserRecord | Response = require_page("plan.whatif")) -> Any:
    """The page: the revision's changed files and a period in, the differences out (its script posts them)."""
    if isinstance(who, Response):
        return who
    plans = getattr(request.app.state, "plans", None)
    history = list(reversed(plans.history())) if plans is not None else []  # the latest first
    return pages.render(request, "whatif.html", user=who, plan_version=plan.version, files=sorted(in_force_texts(request)),
                        local=lambda iso: datetime.fromisoformat(iso).astimezone(BEIJING).strftime("%Y-%m-%d %H:%M"),
                        history=history, shipped=plans.shipped.version if plans is not None else plan.version,
                        adopted=plans is not None and plans.current is not None, status_text=status_text,
                        can_adopt=can(who, "plan.adopt"), whatif_days=ADOPT_WHATIF_DAYS, max_days=MAX_SPAN.days,
                        scenarios=scenario_names())


def scenario_names() -> list[tuple[str, str]]:
    """The shipped scenarios the page offers, (id, name), read as YAML (a few small files, a page load)."""
    import yaml

    out = []
    for stem, path in SCENARIOS.items():
        try:
            name = str((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("name") or stem)
        except (OSError, yaml.YAMLError):
            name = stem  # `yingji drill validate` says what is wrong with it; the page still offers it
        out.append((stem, name))
    return out


def status_text(row: dict) -> str:
    """An adoption's status as the history shows it (static/whatif.js says the same when it redraws)."""
    back = f"，回退至 {row['rollback_of']}" if row["rollback_of"] else ""
    if row["status"] == "conflict":
        return f"冲突未生效：依据版本 {row['previous_version']} 写成，其时现行为 {row['in_force_when_read']}"
    if row["status"] == "refused":
        return f"未能加载：{(row['refused'] or '')[:300]}"
    return ("生效中" if row["status"] == "in_force" else "已被取代") + back


@router.post("/whatif", response_model=WhatIfReport,
             responses={**responses(401, 403, 422, 503),
                        200: {"content": {"application/json": {}, XLSX: {}, "text/markdown": {}},
                              "description": "the comparison as JSON; with format=xlsx or md, the file"}})
async def whatif(request: Request, files: Files, plan: PlanDep, settings: SettingsDep, start: Start = None,
                 end: End = None, scenario: ScenarioName = None, format: Format = "json",
                 who: UserRecord = require("plan.whatif")) -> Any:
    """Every live incident reported in [from, to), replayed under the plan in force and under the plan with
    these files changed, on a simulated clock; per incident what differs (grade, level, lead units,
    commanders, notices, obligations and their outcomes, 督办 steps), each with the rule and section that
    caused it; totals per unit and rule. Or, with `scenario` instead of the period, a drill scenario's incidents
    as if live, and its expectations scored under both plans (7.2.1). The revision is validated first: a plan
    that does not load is refused whole, each problem naming file, line and field. Nothing is written to any
    topic."""
    if scenario is not None:
        if start is not None or end is not None:
            raise refused((("scenario",), "a scenario or a period (from, to), not both"))
    elif start is None or end is None:
        raise refused(*((((name,), "give the period (from and to), or a scenario")) for name, t in
                        (("from", start), ("to", end)) if t is None))
    else:
        check_period(start, end)
    with tempfile.TemporaryDirectory(prefix="yingji-whatif-") as tmp:
        data = Path(tmp) / "data"
        changed = await overlay(files, in_force_texts(request), data)
        busy = replay_lock(request)
        async with busy.lock:
            try:
                if scenario is not None:
                    report = await asyncio.to_thread(_run_scenario, data, SCENARIOS[scenario], plan)
                else:
                    report = await asyncio.to_thread(partial(_run, data, start, end, settings.bootstrap, plan,
                                                             busy.baseline()))
            except RevisionRefused as exc:
                # each problem as the loader names it (file:line: field: message), the folder left out
                raise refused(*((("files",), p.replace(str(data) + "/", "")) for p in exc.problems)) from None
            except ScenarioError as exc:  # the plan in force cannot run it (a type or street it names is gone)
                raise refused((("scenario",), f"the plan in force cannot run {scenario}: {exc}")) from None
            except KafkaError as exc:
                # the documented 503 (error, retry_after_s and Retry-After), as a write the broker did not take
                raise BrokerUnavailable(f"the log could not be read: {type(exc).__name__}") from None
    source = "上传：" + "、".join(changed) + (f"（演练脚本 {scenario}）" if scenario is not None else "")
    report = report.model_copy(update={"revised_source": source})
    log.info("whatif", incidents=report.totals.incidents, differing=report.totals.differing, format=format,
             files=len(changed), by_role=who.role.value)
    stem = quote(f"预案修订推演-{scenario}" if scenario is not None else f"预案修订推演-{start.astimezone(BEIJING):%Y%m%d}")
    if format == "xlsx":
        from services.whatif import to_xlsx

        return Response(await asyncio.to_thread(to_xlsx, report), media_type=XLSX,
                        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{stem}.xlsx"})
    if format == "md":
        return PlainTextResponse(await asyncio.to_thread(to_markdown, report), media_type="text/markdown; charset=utf-8",
                                 headers={"Content-Disposition": f"attachment; filename*=UTF-8''{stem}.md"})
    return report


def _run_scenario(data: Path, path: Path, in_force) -> WhatIfReport:
    """A shipped scenario's incidents under both plans, and its expectations: no log read, nothing kept between
    questions (a scenario replays in milliseconds)."""
    from playbooks.drill.scenario import load_scenario
    from playbooks.whatif import check_scenario, load_revision, scenario_history, what_if

    revised = load_revision(data)
    scenario = load_scenario(path, in_force)
    report = what_if(scenario_history(scenario, in_force), in_force, revised)
    return report.model_copy(update={"scenario": check_scenario(scenario, in_force, revised)})


def _run(data: Path, start: datetime, end: datetime, bootstrap: str, in_force, baseline: dict) -> WhatIfReport:
    from services.whatif import run_whatif

    # workers=1: forking a threaded server is unsafe (services.whatif.run_whatif)
    return run_whatif(data, start, end, bootstrap=bootstrap, in_force=in_force, workers=1, baseline=baseline)
