"""Drills (应急演练, 7.2; 情景构建, 7.1.2): a scripted scenario, replayed on a simulated clock, scored.

Three modules, one reason to change each, so that `drill run` (the live pipeline, events gathered
from Kafka) reuses the last two unchanged:
  scenario.py    the format: typed models and a YAML loader whose errors name the line and the field
                 (the scenario files and their JSON Schema are in scenarios/);
  replay.py      the injects through the pure incident lifecycle on a simulated clock -> Observed;
  evaluation.py  Observed against the scenario's expectations -> Evaluation, as Markdown or JSON.
Beside them, programme.py: the drill programme's register (7.2.1-7.2.3) from the planned drills, plan
revisions and improvement items (topics/programme.py) and the runs' evaluations, with data/drills.yaml
(modelled in playbooks/drills_config.py, which plan.py registers: this package imports the plan).
Pure like the rest of playbooks/: no clock (time is the scenario's own), no Kafka, no services/.
Import each name from the module that owns it.
"""
