"""Drills (应急演练, 7.2; 情景构建, 7.1.2): a scripted scenario, replayed on a simulated clock, scored.

Three modules, one reason to change each, so that `drill run` (the live pipeline, events gathered
from Kafka) reuses the last two unchanged:
  scenario.py    the format: typed models and a YAML loader whose errors name the line and the field
                 (the scenario files and their JSON Schema are in scenarios/);
  replay.py      the injects through the pure incident lifecycle on a simulated clock -> Observed;
  evaluation.py  Observed against the scenario's expectations -> Evaluation, as Markdown or JSON.
Pure like the rest of playbooks/: no clock (time is the scenario's own), no Kafka, no services/.
The names below are the ones the shell imports; new code imports from the module that owns a name.
"""

from playbooks.drill.evaluation import Evaluation, evaluate, score, to_json, to_markdown
from playbooks.drill.replay import Observed, replay
from playbooks.drill.scenario import Scenario, ScenarioError, incident_id, load_scenario, parse_scenario

__all__ = [
    "Evaluation", "Observed", "Scenario", "ScenarioError", "evaluate", "incident_id", "load_scenario",
    "parse_scenario", "replay", "score", "to_json", "to_markdown",
]
