"""Export the JSON Schemas of every contract; `python -m topics.schemas` rewrites them."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from topics.catalog import CATALOG
from topics.ledger import CircularRequest, RectificationRequest
from topics.models import Decision
from topics.plan import RollbackRequest
from topics.programme import DrillPlanRequest, ImprovementCloseRequest, ImprovementRequest, RevisionRequest
from topics.requests import ApprovalRequest, EndRequest, FileReportRequest, NewUserRequest, ReportSubmission

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


def contracts() -> dict[str, type[BaseModel]]:
    out: dict[str, type[BaseModel]] = {
        m.__name__: m for m in (ReportSubmission, Decision, FileReportRequest, ApprovalRequest, EndRequest, NewUserRequest,
                                 CircularRequest, RectificationRequest, DrillPlanRequest, RevisionRequest,
                                 ImprovementRequest, ImprovementCloseRequest, RollbackRequest)
    }
    for spec in CATALOG:
        out[spec.model.__name__] = spec.model
    return out


def rendered() -> dict[str, str]:
    return {
        f"{name}.schema.json": json.dumps(model.model_json_schema(), ensure_ascii=False, indent=2, sort_keys=True)
        + "\n"
        for name, model in sorted(contracts().items())
    }


def write() -> list[Path]:
    SCHEMA_DIR.mkdir(exist_ok=True)
    paths = []
    for filename, text in rendered().items():
        path = SCHEMA_DIR / filename
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write():
        print(p)
