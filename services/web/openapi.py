"""/openapi.json as the API behaves: the values the plan accepts (table 2.3.6's types, the district's
streets, the units that file) are enums taken from the plan in force, so a client sees what a 422
would refuse before it sends it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from playbooks.plan import Plan


def openapi_with_plan(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with the vocabulary of the plan in force (app.state.plan), installed as app.openapi:
    made once, and again after a revision is adopted (services.web.app._adopt clears it)."""
    if app.openapi_schema is None:
        plan: Plan = app.state.plan
        schema = FastAPI.openapi(app)
        declare_vocabulary(schema["components"]["schemas"], plan)
        declare_unit_params(schema["paths"], plan)
        declare_programme(schema["components"]["schemas"], plan)
        app.openapi_schema = schema
    return app.openapi_schema


def declare_vocabulary(schemas: dict[str, Any], plan: Plan) -> None:
    """What playbooks.engine.check_report and check_filing accept, written into the request schemas."""
    types = sorted({t.id for t in plan.types.values()}) + sorted({t.name for t in plan.types.values()})
    _set(schemas, "ReportSubmission", "type", {
        "type": "string", "enum": types,
        "description": "a type of table 2.3.6 (2.3.6), by its id or its Chinese name; 其他 (other) if none fits (2.3.3)",
    })
    _set(schemas, "Location", "street", {
        "anyOf": [{"type": "string", "enum": ["", *plan.streets]}, {"type": "null"}],
        "description": "属地: one of the district's 22 streets and townships (4.2.2), or empty when not known",
    })
    _set(schemas, "FileReportRequest", "unit_id", {
        "type": "string", "enum": sorted({*plan.units, *plan.parties}),
        "description": "the filing unit's id: a unit, party or street of the plan (units.yaml)",
    })


def declare_programme(schemas: dict[str, Any], plan: Plan) -> None:
    """The drill programme's bodies (services.web.routes.drill_programme): units and plans of the plan."""
    units = {"type": "string", "enum": sorted(plan.units), "description": "a unit's id (units.yaml)"}
    plans = sorted(["general", *(p.id for p in plan.command.special_plans)])
    for model in ("DrillPlanRequest", "ImprovementRequest"):
        _set(schemas, model, "unit_id", units)
    _set(schemas, "RevisionRequest", "plan_id", {
        "type": "string", "enum": plans, "description": "a special plan of 8.3 (command.yaml), or general"})
    _set(schemas, "DrillPlanRequest", "validates", {
        "anyOf": [{"type": "string", "enum": plans}, {"type": "null"}],
        "description": "the plan under revision it validates (验证性演练, 7.2.1)"})


def declare_unit_params(paths: dict[str, Any], plan: Plan) -> None:
    """The ledger's and the drill programme's `unit` query parameter: one of the plan's unit ids."""
    for path in ("/ledger", "/drills/{run_id}/ledger", "/drills/programme"):
        for param in paths[path]["get"]["parameters"]:
            if param["name"] == "unit":
                param["schema"] = {"anyOf": [{"type": "string", "enum": sorted(plan.units)}, {"type": "null"}],
                                   "title": "Unit", "description": param.get("description", "")}


def _set(schemas: dict[str, Any], model: str, field: str, schema: dict[str, Any]) -> None:
    properties = schemas[model]["properties"]
    if field not in properties:  # the model changed: this must change with it
        raise KeyError(f"{model}.{field} is not in the API's schema")
    title = properties[field].get("title")
    properties[field] = {**schema, **({"title": title} if title else {})}
