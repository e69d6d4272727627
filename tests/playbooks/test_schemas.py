"""The playbook files' JSON Schemas: checked in and current, every shipped file valid against them,
and a wrong edit refused by the schema alone (what an editor would show), naming where."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema_rs
import pytest
import yaml

from playbooks.drill.scenario import SCENARIOS_DIR, SCHEMA_PATH as SCENARIO_SCHEMA
from playbooks.plan import DATA_DIR, PLAN_FILES
from playbooks.schemas import SCHEMA_DIR, rendered, schema_name

SHIPPED = [(DATA_DIR / name, SCHEMA_DIR / schema_name(name)) for name in PLAN_FILES] + [
    (path, SCENARIO_SCHEMA) for path in sorted(SCENARIOS_DIR.glob("*.yaml"))]


class _AsEditorsRead(yaml.SafeLoader):
    """A timestamp stays a string, as JSON (and an editor's schema check) has no dates."""


_AsEditorsRead.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load(path: Path):
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_AsEditorsRead)  # noqa: S506 - a SafeLoader


def validator(schema_path: Path):
    return jsonschema_rs.Draft202012Validator(json.loads(schema_path.read_text(encoding="utf-8")))


def test_every_data_file_has_a_schema():
    assert sorted(p.name for p in DATA_DIR.glob("*.yaml")) == sorted(PLAN_FILES)


@pytest.mark.parametrize("path", list(rendered()), ids=lambda p: p.name)
def test_schema_is_current(path):
    assert path.exists(), f"{path.name} missing: run `python -m playbooks.schemas`"
    assert path.read_text(encoding="utf-8") == rendered()[path], f"{path.name} is stale: run `python -m playbooks.schemas`"


@pytest.mark.parametrize(("data", "schema"), SHIPPED, ids=[p.name for p, _ in SHIPPED])
def test_shipped_file_validates_against_its_schema(data, schema):
    errors = [f"{'.'.join(map(str, e.instance_path))}: {e.message}" for e in validator(schema).iter_errors(load(data))]
    assert errors == []


@pytest.mark.parametrize(
    ("file", "edit", "where"),
    [
        ("obligations.yaml", lambda d: d["obligations"][0]["when"].update(fact_positive=["deathz"]),
         "obligations.0.when.fact_positive"),
        ("notifications.yaml", lambda d: d["rules"][0]["when"].update(flag=["urgent"]), "rules.0.when.flag"),
        ("response.yaml", lambda d: d["base_levels"][0].update(level="五级"), "base_levels.0.level"),
        ("grading.yaml", lambda d: next(iter(d["families"].values()))["criteria"][0].update(fact="death"),
         "families.production_safety.criteria.0.fact"),
        ("incident_types.yaml", lambda d: d["types"][0].update(category="weather"), "types.0.category"),
        ("units.yaml", lambda d: d["units"][0].update(colour="red"), "units.0"),
    ],
    ids=["unknown-fact", "unknown-flag", "unknown-level", "unknown-grading-fact", "unknown-category", "unknown-key"],
)
def test_a_wrong_edit_is_refused_by_the_schema_naming_where(file, edit, where):
    data = load(DATA_DIR / file)
    edit(data)
    paths = [".".join(map(str, e.instance_path)) for e in validator(SCHEMA_DIR / schema_name(file)).iter_errors(data)]
    assert where in paths
