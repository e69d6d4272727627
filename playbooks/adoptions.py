"""Which adoption of the plan is in force (7.1.5 修订; issue 24 item 3): the adoptions on yingji.plan.adoptions
folded in log order, compare-and-set. An adoption takes effect only if the version it names as replaced
(`previous_version`) is the version in force when it is read; otherwise it is refused as a conflict and kept on
record, and the plan in force stays. Two offices adopting against the same version: the first on the log
wins, the second is refused, never a silent lost update.

One fold for every reader (each worker's and API replica's PlanBook, the CLI's `in_force` and `history`), so
they all decide the same. Pure: records in, the ruling out; whether a revision's texts load is the caller's
loader's (`refusal`), asked only of an adoption that passed the check, once for each.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from playbooks.whatif import WhatIfReport
from topics.plan import PlanAdopted, WhatIfSummary


class Refusal(StrEnum):
    CONFLICT = "conflict"  # written against a version that was not in force when it was read
    TEXTS = "texts"  # its texts are not its version, or do not load


@dataclass(frozen=True)
class Refused:
    kind: Refusal
    reason: str
    in_force: str  # the version in force when it was read (and after it: it changed nothing)


@dataclass(frozen=True)
class Ruling:
    """The adoptions in log order (each id once), the one in force (None: none took effect, the shipped plan
    is in force), and those refused with why."""

    version: str
    adoption: PlanAdopted | None
    records: tuple[PlanAdopted, ...] = ()
    refused: Mapping[str, Refused] = field(default_factory=dict)

    def accepted(self) -> list[PlanAdopted]:
        """Those that took effect, in log order (each was in force until the next)."""
        return [a for a in self.records if a.id not in self.refused]


def texts_version(files: Mapping[str, str]) -> str:
    """The version of a plan's data directory holding these files: the digest playbooks.plan.load_plan makes
    (every YAML file's bytes, by name)."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(files[name].encode("utf-8"))
    return digest.hexdigest()[:12]


def rule(adoptions: Iterable[PlanAdopted], *, shipped: str,
         refusal: Callable[[PlanAdopted], str | None] = lambda _: None) -> Ruling:
    """The adoptions folded in log order. `shipped`: the version in force before any took effect. `refusal`:
    why an adoption's texts do not load (None: they load); the same texts give the same answer, so the caller
    may keep it by version.

    Before any adoption took effect the plan in force is the one each process ships, which a deploy changes:
    the first adoption to take effect is not checked against this reader's shipped version (it has no
    adoption to overwrite, and a history adopted before a deploy stays in force after it). Every later one is."""
    version, current = shipped, None
    seen: set[str] = set()
    records: list[PlanAdopted] = []
    refused: dict[str, Refused] = {}
    for a in adoptions:
        if a.id in seen:
            continue  # the same record sent again (a retried send): once
        seen.add(a.id)
        records.append(a)
        if a.previous_version is None:
            refused[a.id] = Refused(Refusal.CONFLICT, "names no version it replaces (previous_version)", version)
            continue
        if current is not None and a.previous_version != version:
            refused[a.id] = Refused(Refusal.CONFLICT, f"written against version {a.previous_version} while "
                                                      f"{version} was in force", version)
            continue
        digest = texts_version(a.files)
        why = (f"its texts are version {digest}, the record says {a.version}" if digest != a.version
               else refusal(a))
        if why is not None:
            refused[a.id] = Refused(Refusal.TEXTS, why, version)
            continue
        version, current = a.version, a
    return Ruling(version=version, adoption=current, records=tuple(records), refused=refused)


def rollback_source(ruling: Ruling, version: str) -> PlanAdopted | None:
    """The latest adoption of `version` that took effect (whose texts a rollback adopts again); None when no
    adoption of it did (the shipped plan's, or one never in force: the caller says which)."""
    return next((a for a in reversed(ruling.accepted()) if a.version == version), None)


def whatif_summary(report: WhatIfReport) -> WhatIfSummary:
    """The what-if's counts as an adoption records them (the full report is the what-if's own)."""
    t = report.totals
    return WhatIfSummary(period_from=report.period_from, period_to=report.period_to,
                         plan_in_force=report.plan_in_force, incidents=t.incidents, differing=t.differing,
                         by_aspect=t.by_aspect, breaches_before=t.breaches_before, breaches_after=t.breaches_after)
