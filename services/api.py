"""HTTP API: raise incidents and read them. Thin: parse, publish, answer; no decision logic here."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from contextlib import asynccontextmanager
from typing import Annotated, Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from playbooks.engine import FieldProblem, ReportRejected, check_filing
from playbooks.plan import Plan, load_plan
from services import logs, metrics
from services import pages
from services.clock import Clock, WallClock
from playbooks.drill import ScenarioError, parse_scenario
from services.auth import require
from services.drills import DrillRun, new_run_id, run_drill
from services.intake import accept
from services.privacy import Sealer
from services.settings import Settings, get_settings
from services.users import UserDirectory, new_token, user_record
from services.view import IncidentView
from topics.catalog import INCIDENT_COMMANDS, INCIDENTS_REPORTED, USERS
from topics.models import (
    ApprovalRecorded,
    ApprovalRequest,
    EndRecorded,
    EndRequest,
    FileReportRequest,
    IncidentCommand,
    NewUserRequest,
    PrivateDetails,
    ReportFiled,
    ReportSubmission,
    Role,
    UserRecord,
)

log = structlog.get_logger("yingji", stage="api")
# Path parameters are record ids: refused with a 422 naming them unless they look like one.
IncidentId = Annotated[str, PathParam(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9._:\-]+$")]
UserName = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._\-]+$")]
RunId = Annotated[str, PathParam(min_length=1, max_length=16, pattern=r"^[a-z0-9]+$")]
PRODUCE_TIMEOUT_S = 5.0
RETRY_AFTER_S = "5"


class Accepted(BaseModel):
    incident_id: str
    report_id: str
    status: str = "accepted"


class DrillRequest(BaseModel):
    """POST /drills: a scenario (YAML text, playbooks/drill/scenarios/README.md) replayed at `speed`× real time."""

    model_config = {"extra": "forbid"}
    scenario: str = Field(max_length=2_000_000)
    speed: float = Field(default=60.0, gt=0, le=100_000)


class CommandAccepted(BaseModel):
    incident_id: str
    command_id: str
    status: str = "accepted"


def _field_errors(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        if err.get("type") == "json_invalid":  # its loc is a character position, not a field
            loc, msg = [], f"{msg} at character {err.get('loc', ('', '?'))[-1]}"
        path = ".".join(loc)
        if not path and ": " in msg:  # model-level checks name their field at the start
            path, msg = msg.split(": ", 1)
        out.append({"field": path or "(body)", "message": msg})
    return out


def _problem_fields(problems: list[FieldProblem]) -> list[dict[str, str]]:
    return [{"field": p.field, "message": p.message} for p in problems]


def invalid(problems: list[dict[str, str]]) -> JSONResponse:
    return JSONResponse(status_code=422, content={"error": "invalid report", "fields": problems})


def conflict(field: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=409, content={"error": "conflict", "fields": [{"field": field, "message": message}]})


def unavailable(reason: str) -> JSONResponse:
    return JSONResponse(
        status_code=503, content={"error": reason, "retry_after_s": int(RETRY_AFTER_S)}, headers={"Retry-After": RETRY_AFTER_S}
    )


def create_app(settings: Settings | None = None, *, plan: Plan | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or get_settings()
    # the API is its own process (uvicorn --factory): its log lines are scrubbed as the worker's are
    logs.configure(json=settings.log_json, level=settings.log_level, library_level=settings.library_log_level)
    plan = plan or load_plan()
    clock = clock or WallClock()
    sealer = Sealer.from_file(settings.key_file)
    view = IncidentView()
    users = UserDirectory()
    state: dict[str, Any] = {"producer": None}

    async def start_producer() -> None:
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=settings.bootstrap, acks="all", enable_idempotence=True, linger_ms=0,
                request_timeout_ms=5000
            )
            try:
                await producer.start()
                state["producer"] = producer
                return
            except KafkaError as exc:
                log.warning("producer_retry", error=type(exc).__name__)
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(1)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        tasks = [
            asyncio.create_task(start_producer()),
            asyncio.create_task(view.follow(settings.bootstrap)),
            asyncio.create_task(users.follow(settings.bootstrap)),
        ]
        try:
            yield
        finally:
            for task in [*tasks, *state.get("drill_tasks", ())]:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if state["producer"] is not None:
                await state["producer"].stop()

    api = FastAPI(
        title="yingji 应急",
        version="0.1.0",
        description="通州区突发事件总体应急预案（2022）: incidents raised, graded, routed and tracked.",
        lifespan=lifespan,
    )
    api.state.view = view
    api.state.users = users
    api.state.sealer = sealer

    @api.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
            return JSONResponse(status_code=413, content={"error": f"body larger than {settings.max_body_bytes} bytes"})
        return await call_next(request)

    @api.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid(_field_errors(exc.errors()))

    @api.post("/incidents", status_code=202, response_model=Accepted, responses={409: {}, 422: {}, 503: {}})
    async def raise_incident(submission: ReportSubmission, user: UserRecord = require("incident.raise")) -> Any:
        """Accept a report: answered 202 only once the broker acknowledged it (acks=all)."""
        try:
            record = accept(submission, plan=plan, sealer=sealer, now=clock.now(), raised_by=user.name)
        except ReportRejected as exc:
            return invalid(_problem_fields(exc.problems))
        known = view.incidents.get(record.incident_id)
        if known is not None and known.reported is not None:
            # A retry of the same report (its 202 lost) is answered again and not sent twice; another
            # report under a used id would never be decided (the worker keeps the first), so say so.
            first = known.reported
            if first.report == record.report and _same_private(first.private_sealed, submission):
                return Accepted(incident_id=first.incident_id, report_id=first.report.report_id)
            return conflict("report_id", f"{record.incident_id!r} was reported already, with other content")
        producer: AIOKafkaProducer | None = state["producer"]
        if producer is None:
            return unavailable("broker not reachable yet")
        try:
            await asyncio.wait_for(
                producer.send_and_wait(
                    INCIDENTS_REPORTED.name, key=record.incident_id.encode(), value=record.model_dump_json().encode()
                ),
                timeout=PRODUCE_TIMEOUT_S,
            )
        except (KafkaError, asyncio.TimeoutError) as exc:
            log.warning("produce_failed", incident_id=record.incident_id, error=type(exc).__name__)
            return unavailable("broker did not acknowledge the report")
        view.apply(INCIDENTS_REPORTED.name, record.model_dump_json().encode())
        log.info("accepted", incident_id=record.incident_id, type=record.report.type)
        return Accepted(incident_id=record.incident_id, report_id=record.report.report_id)

    def _same_private(sealed: str | None, submission: ReportSubmission) -> bool:
        if sealed is None:  # sealing leaves nothing when there is nothing private
            return submission.private_details() == PrivateDetails()
        try:
            return sealer.open(sealed) == submission.private_details()
        except ValueError:  # sealed with another key: cannot tell, so not the same
            return False

    async def publish_command(incident_id: IncidentId, body) -> Any:
        incident = view.incidents.get(incident_id)
        if incident is None or incident.reported is None:
            raise HTTPException(status_code=404, detail=f"incident_id: no incident {incident_id!r}")
        if incident.reported.report.drill:
            # a drill's incident moves on its drill's simulated clock: the worker would dead-letter a
            # command without one, so refuse it here, where the caller sees why
            return conflict("incident_id", f"{incident_id!r} is a drill's incident: its scenario files its reports")
        cmd = IncidentCommand(id=body.id, incident_id=incident_id, drill=incident.reported.report.drill, body=body)
        producer: AIOKafkaProducer | None = state["producer"]
        if producer is None:
            return unavailable("broker not reachable yet")
        try:
            await asyncio.wait_for(
                producer.send_and_wait(INCIDENT_COMMANDS.name, key=incident_id.encode(), value=cmd.model_dump_json().encode()),
                timeout=PRODUCE_TIMEOUT_S,
            )
        except (KafkaError, asyncio.TimeoutError) as exc:
            log.warning("produce_failed", incident_id=incident_id, error=type(exc).__name__)
            return unavailable("broker did not acknowledge the command")
        log.info("command_accepted", incident_id=incident_id, command=body.command)
        return CommandAccepted(incident_id=incident_id, command_id=cmd.id)

    def command_id(prefix: str, req: FileReportRequest | ApprovalRequest | EndRequest) -> str:
        """A request with a client's request_id names its command by that id and its content: sent again
        as it was, the same command (applied once); edited, another."""
        if req.request_id is None:
            return f"{prefix}-{uuid.uuid4().hex[:20]}"
        return f"{prefix}-{hashlib.sha256(req.model_dump_json().encode()).hexdigest()[:24]}"

    @api.post("/incidents/{incident_id}/reports", status_code=202, response_model=CommandAccepted,
              responses={404: {}, 409: {}, 422: {}, 503: {}})
    async def file_report(incident_id: IncidentId, req: FileReportRequest, user: UserRecord = require("incident.file")) -> Any:
        """File a phone / written / detailed / follow-up report (续报 carries new facts and re-runs the plan)."""
        problems = check_filing(req, plan)
        if problems:  # the worker would dead-letter it after our 202: the caller must hear it now
            return invalid(_problem_fields(problems))
        body = ReportFiled(
            id=command_id("f", req), incident_id=incident_id, kind=req.kind, unit_id=req.unit_id, filed_at=req.filed_at,
            filed_by=req.filed_by, content_sealed=sealer.seal_text(req.content), followup=req.followup,
            recorded_by=user.name,
        )
        return await publish_command(incident_id, body)

    @api.post("/incidents/{incident_id}/approvals", status_code=202, response_model=CommandAccepted,
              responses={404: {}, 409: {}, 422: {}, 503: {}})
    async def approve(incident_id: IncidentId, req: ApprovalRequest, user: UserRecord = require("incident.approve")) -> Any:
        """区应急委主任或副主任's approval to report a 较大+ event to 市应急办 (4.1.3)."""
        body = ApprovalRecorded(id=command_id("a", req), incident_id=incident_id, approver=req.approver,
                                approver_role=req.approver_role, approved_at=req.approved_at, recorded_by=user.name)
        return await publish_command(incident_id, body)

    @api.post("/incidents/{incident_id}/end", status_code=202, response_model=CommandAccepted,
              responses={404: {}, 409: {}, 422: {}, 503: {}})
    async def end(incident_id: IncidentId, req: EndRequest, user: UserRecord = require("incident.end")) -> Any:
        """应急结束 (4.8.2): 区应急委 approves for 一般; the city's decision is recorded for 较大+."""
        body = EndRecorded(id=command_id("x", req), incident_id=incident_id, authority=req.authority,
                           decided_by=req.decided_by, ended_at=req.ended_at, recorded_by=user.name)
        return await publish_command(incident_id, body)

    @api.get("/incidents/{incident_id}/timeline")
    async def timeline(incident_id: IncidentId, _: UserRecord = require("incident.read")) -> dict[str, Any]:
        incident = view.incidents.get(incident_id)
        if incident is None:
            raise HTTPException(status_code=404, detail=f"incident_id: no incident {incident_id!r}")
        return {"incident_id": incident_id, "events": incident.timeline()}

    @api.get("/incidents")
    async def list_incidents(
        drill: bool | None = None, limit: Annotated[int, Query(ge=1, le=5000)] = 500,
        _: UserRecord = require("incident.read"),
    ) -> dict[str, Any]:
        items = [s.as_json() for s in view.incidents.values() if drill is None or s.as_json()["drill"] == drill]
        return {"count": len(items), "incidents": items[-limit:]}

    @api.get("/incidents/{incident_id}")
    async def get_incident(incident_id: IncidentId, _: UserRecord = require("incident.read")) -> dict[str, Any]:
        state_ = view.incidents.get(incident_id)
        if state_ is None:
            raise HTTPException(status_code=404, detail=f"incident_id: no incident {incident_id!r}")
        return state_.as_json()

    @api.get("/incidents/{incident_id}/private")
    async def private_details(incident_id: IncidentId, user: UserRecord = require("incident.private")) -> dict[str, Any]:
        """The reporter's name and phone and the summary: only for roles that act on them."""
        incident = view.incidents.get(incident_id)
        if incident is None or incident.reported is None:
            raise HTTPException(status_code=404, detail=f"incident_id: no incident {incident_id!r}")
        sealed = incident.reported.private_sealed
        details = sealer.open(sealed).model_dump() if sealed else {"reporter": {"name": "", "phone": ""}, "summary": ""}
        log.info("private_read", incident_id=incident_id, by=user.name)
        return {"incident_id": incident_id, **details}

    async def produce_user(rec: UserRecord) -> None:
        producer: AIOKafkaProducer | None = state["producer"]
        if producer is None:
            raise HTTPException(status_code=503, detail="broker not reachable yet", headers={"Retry-After": RETRY_AFTER_S})
        try:
            await asyncio.wait_for(
                producer.send_and_wait(USERS.name, key=rec.name.encode(), value=rec.model_dump_json().encode()),
                timeout=PRODUCE_TIMEOUT_S,
            )
        except (KafkaError, asyncio.TimeoutError) as exc:
            raise HTTPException(status_code=503, detail="broker did not acknowledge",
                                headers={"Retry-After": RETRY_AFTER_S}) from exc
        users.apply(rec)

    @api.post("/users", status_code=201, responses={409: {}})
    async def add_user(req: NewUserRequest, admin: UserRecord = require("users.manage")) -> Any:
        """A new user; the token is shown in this answer only."""
        existing = users.by_name.get(req.name)
        if existing is not None and not existing.revoked:
            # re-adding would silently replace a person's token and role: revoke first, on purpose
            return conflict("name", f"{req.name!r} is a user already; revoke it first for a new token or role")
        token = new_token()
        await produce_user(user_record(req.name, req.role, token, now=clock.now(), by=admin.name))
        log.info("user_added", user=req.name, role=req.role.value, by=admin.name)
        return {"name": req.name, "role": req.role.value, "token": token}

    @api.delete("/users/{name}", status_code=200, responses={404: {}, 409: {}})
    async def revoke_user(name: UserName, admin: UserRecord = require("users.manage")) -> Any:
        old = users.by_name.get(name)
        if old is None:
            raise HTTPException(status_code=404, detail=f"name: no user {name!r}")
        if old.role is Role.ADMIN and not old.revoked and not users.has_admin(besides=name):
            # with no admin left nobody could add or revoke anyone through the API
            return conflict("name", f"{name!r} is the last admin; add another admin first")
        await produce_user(user_record(name, old.role, new_token(), now=clock.now(), by=admin.name, revoked=True))
        log.info("user_revoked", user=name, by=admin.name)
        return {"name": name, "revoked": True}

    drills: dict[str, DrillRun] = {}
    api.state.drills = drills

    @api.post("/drills", status_code=202, responses={422: {}, 503: {}})
    async def start_drill(req: DrillRequest, user: UserRecord = require("drill.run")) -> Any:
        """Replay a scenario onto the running service, marked as a drill; score it when it ends."""
        try:
            scenario = parse_scenario(req.scenario, source="scenario", plan=plan)
        except ScenarioError as exc:
            fields = [{"field": p.field, "line": p.line, "message": p.message} for p in exc.problems]
            return JSONResponse(status_code=422, content={"error": "invalid scenario", "fields": fields})
        producer: AIOKafkaProducer | None = state["producer"]
        if producer is None:
            return unavailable("broker not reachable yet")
        run = DrillRun(run_id=new_run_id(), scenario=scenario, speed=req.speed, started_by=user.name)
        drills[run.run_id] = run
        run_task = asyncio.create_task(run_drill(run, plan=plan, producer=producer, view=view))
        state.setdefault("drill_tasks", set()).add(run_task)
        run_task.add_done_callback(state["drill_tasks"].discard)
        log.info("drill_started", run_id=run.run_id, scenario=scenario.id, speed=req.speed, by=user.name)
        return {"run_id": run.run_id, "status": run.status}

    @api.get("/drills")
    async def list_drills(_: UserRecord = require("incident.read")) -> dict[str, Any]:
        return {"drills": [{k: v for k, v in d.as_json().items() if k not in ("evaluation", "markdown")}
                           for d in drills.values()]}

    @api.get("/drills/{run_id}")
    async def get_drill(run_id: RunId, _: UserRecord = require("incident.read")) -> dict[str, Any]:
        run = drills.get(run_id)
        if run is None:
            raise HTTPException(status_code=404, detail=f"run_id: no drill run {run_id!r}")
        return run.as_json()

    @api.get("/healthz")
    async def health() -> Any:
        """Ready (200) once the broker takes writes and users and incidents are read back; else 503."""
        body = {"producer": state["producer"] is not None, "users_caught_up": users.caught_up.is_set(),
                "view_caught_up": view.caught_up.is_set()}
        return JSONResponse(status_code=200 if all(body.values()) else 503, content=body)

    @api.get("/metrics", include_in_schema=False)
    async def prometheus(_: UserRecord = require("metrics.read")) -> Response:
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    api.include_router(pages.build_router())
    return api
