"""The API's error answers, and the OpenAPI entries that declare them: every status a route can
answer is listed on it (responses(...)), with the body it carries.

- 401/403/404/405 and 413: {"detail": text} (FastAPI's HTTPException);
- 409 and 422: {"error": text, "fields": [{"field": path, "message": text}, ...]}, naming each field;
- 503: {"error": text, "retry_after_s": n} and a Retry-After header: nothing was written, send again.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from playbooks.engine import FieldProblem

RETRY_AFTER_S = 5


class FieldError(BaseModel):
    field: str
    message: str
    line: int | None = None  # a drill scenario's problems name the line of its YAML
    row: int | None = None  # a 值班表's problems name the row and column of the spreadsheet
    column: str | None = None
    rule: str | None = None  # the duty rule broken (duty.yaml), or input / reference


class Problem(BaseModel):
    """409 and 422: what is wrong, field by field."""

    error: str
    fields: list[FieldError] = []


class Refused(BaseModel):
    """401, 403, 404, 413: one sentence."""

    detail: str


class Unavailable(BaseModel):
    """503: the broker did not take the write; nothing happened, send the same request again."""

    error: str
    retry_after_s: int


_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before sending the same request again",
                                "schema": {"type": "string"}}}
_DOCS: dict[int, dict[str, Any]] = {
    401: {"model": Refused, "description": "no valid sign-in (bearer token or the yingji_token cookie)",
          "headers": {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}},
    403: {"model": Refused, "description": "signed in, but the role may not do this"},
    404: {"model": Refused, "description": "no such incident, user or drill run"},
    409: {"model": Problem, "description": "conflicts with what is on record (the field is named)"},
    413: {"model": Problem, "description": "the body is larger than the service takes"},
    422: {"model": Problem, "description": "invalid: each field named, with what is wrong"},
    503: {"model": Unavailable, "description": "the broker did not acknowledge: nothing was written",
          "headers": _RETRY_AFTER},
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: the error answers it can give, documented once here."""
    return {code: _DOCS[code] for code in codes}


def field_errors(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    """pydantic's errors as {"field", "message"}: the field as a dotted path, the message as said."""
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


def problem_fields(problems: list[FieldProblem]) -> list[dict[str, str]]:
    return [{"field": p.field, "message": p.message} for p in problems]


def invalid(problems: list[dict[str, Any]], error: str = "invalid report") -> JSONResponse:
    return JSONResponse(status_code=422, content={"error": error, "fields": problems})


def conflict(field: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=409, content={"error": "conflict", "fields": [{"field": field, "message": message}]})


def unavailable(reason: str) -> JSONResponse:
    return JSONResponse(status_code=503, content={"error": reason, "retry_after_s": RETRY_AFTER_S},
                        headers={"Retry-After": str(RETRY_AFTER_S)})
