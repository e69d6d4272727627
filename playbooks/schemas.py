"""Export the JSON Schemas of the playbook files; `python -m playbooks.schemas` rewrites them.

The plan's files (playbooks/data/*.yaml), one schema each in playbooks/schemas/, from the models
the loader validates them with; and the drill scenario's, beside the scenarios. An editor pointed
at them (e.g. the YAML extension's `yaml.schemas` setting) checks a YAML change as it is typed;
a test keeps them current and every shipped file valid against them.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from playbooks.drill.scenario import SCHEMA_PATH as SCENARIO_SCHEMA_PATH
from playbooks.drill.scenario import Scenario
from playbooks.plan import PLAN_FILES

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


def schema_name(data_file: str) -> str:
    """units.yaml -> units.schema.json"""
    return data_file.removesuffix(".yaml") + ".schema.json"


def _text(model: type[BaseModel], title: str | None = None) -> str:
    schema = model.model_json_schema()
    if title:
        schema["title"] = title
    return json.dumps(schema, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def rendered() -> dict[Path, str]:
    out = {SCHEMA_DIR / schema_name(name): _text(model, f"playbooks/data/{name}") for name, model in PLAN_FILES.items()}
    out[SCENARIO_SCHEMA_PATH] = _text(Scenario)
    return out


def write() -> list[Path]:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for path, text in rendered().items():
        path.write_text(text, encoding="utf-8")
    return list(rendered())


if __name__ == "__main__":
    for p in write():
        print(p)
