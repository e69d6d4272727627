"""A revision of the plan adopted (7.1.5 修订), as a record (topic yingji.plan.adoptions, key the adoption's id).

The record carries the revision itself (every YAML file of its data directory, name → text), not a path:
every worker and API replica reads the topic from its start, folds it compare-and-set (an adoption written
against a version no longer in force is refused as a conflict, playbooks.adoptions) and loads the texts of the
one in force, so they all hold the same plan whatever machine they run on, and a restarted process comes back
under it. A
rollback is an adoption too: the texts of an earlier adoption (or of the shipped plan) adopted again,
naming what it goes back to in `rollback_of`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from topics.models import SCHEMA_VERSION, Contract, LongText, RecordId, ShortText, UtcDatetime

# The texts' total, UTF-8: the shipped plan is about 114 KB. The topic takes records up to 1 MiB
# (topics/catalog.py PLAN_ADOPTIONS: max.message.bytes, the producers' default max request size); the
# rest of the record and JSON's escapes fit in what this leaves.
PLAN_TEXTS_MAX = 768 * 1024
# The whole record, as written (model_dump_json): under the producers' 1 MiB request with room for its key and the
# batch's overhead. The texts' own limit above leaves room for their JSON escapes; a text of escapes, or the changes
# kept beside it (PLAN_CHANGES_KEPT), can still pass 1 MiB: its writer refuses it, naming the size, not the broker.
RECORD_MAX = 1024 * 1024 - 8 * 1024
PlanFileName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,60}\.yaml$")]
SHIPPED = "shipped"  # rollback_of: the plan shipped with the service (playbooks/data), never adopted on the log


class WhatIfSummary(Contract):
    """What the what-if (issue 24 item 1) found over the period checked before adopting: the counts, not the
    report (the full report is `yingji whatif`'s)."""

    period_from: UtcDatetime
    period_to: UtcDatetime
    plan_in_force: ShortText = Field(description="the version compared against")
    incidents: int = Field(ge=0)
    differing: int = Field(ge=0, description="incidents the revision would have handled differently")
    by_aspect: dict[ShortText, int] = Field(default_factory=dict, description="differences per aspect (grade, lead …)")
    breaches_before: int = Field(ge=0)
    breaches_after: int = Field(ge=0)


PLAN_CHANGES_KEPT = 50  # an adoption keeps its first 50 changes and the count of the rest (our choice: the record's size)


class PlanChange(Contract):
    """One field a revision adds, removes or changes, as playbooks.plan_diff finds it."""

    # the values as they are: a change of surrounding spaces is a change, shown as one
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    file: PlanFileName = Field(description="the plan file, e.g. obligations.yaml")
    path: LongText = Field(description="the field in it, e.g. obligations[phone_report].due_after_minutes")
    change: Literal["added", "removed", "changed"]
    basis: LongText | None = Field(description="the plan section (or the source) of the rule the field is in, if it "
                                               "names one")
    our_choice: bool = Field(False, description="the rule is marked as our choice, not the plan's")
    before: LongText | None = Field(description="in the plan in force; None: not there")
    after: LongText | None = Field(description="in the revision; None: not there")


class PlanAdopted(Contract):
    """A revision adopted: from the moment each process reads it, the plan it decides under."""

    # the texts exactly as written: a stripped newline would be another version (the digest of the bytes)
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)
    id: RecordId
    version: ShortText = Field(description="the revision's version: the digest of its YAML files (playbooks.plan)")
    files: dict[PlanFileName, str] = Field(min_length=1, max_length=40,
                                           description="the revision's data directory: file name → its YAML text")
    adopted_by: ShortText
    adopted_at: UtcDatetime
    reason: LongText = Field(min_length=1)
    previous_version: ShortText | None = Field(default=None, description=(
        "the version it replaces, in force when it was written: it takes effect only if that version is still "
        "in force when it is read in log order, else it is refused as a conflict (playbooks.adoptions)"))
    whatif: WhatIfSummary | None = Field(default=None, description="the what-if it was adopted on; None: a rollback "
                                                                    "to a version already in force before")
    rollback_of: ShortText | None = Field(default=None, description="going back: the id of the adoption whose texts "
                                                                    f"it adopts again, or `{SHIPPED}`")
    changes: list[PlanChange] = Field(default_factory=list, max_length=PLAN_CHANGES_KEPT, description=(
        "what it changes in the plan in force when written, field by field (the first "
        f"{PLAN_CHANGES_KEPT}); empty in a record written before they were kept"))
    changes_more: int = Field(0, ge=0, description="its changes past those kept")
    schema_version: int = SCHEMA_VERSION

    @model_validator(mode="after")
    def _size(self) -> "PlanAdopted":
        total = sum(len(text.encode()) for text in self.files.values())
        if total > PLAN_TEXTS_MAX:
            raise ValueError(f"files: {total} bytes, more than {PLAN_TEXTS_MAX}")
        return self  # the whole record against RECORD_MAX: by its writers (services.plan_book.with_changes), not here,
        # where a record read back from the log is validated too: one written before the check must still be read


def adoption_id(version: str, adopted_at: datetime) -> str:
    """Stable for one adoption: a retried send is the same record."""
    return f"plan.{version}.{adopted_at.strftime('%Y%m%dT%H%M%S%fZ')}"


Version = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{12}$")]  # a plan's version: its texts' digest


class RollbackRequest(Contract):
    """POST /plan/rollbacks: adopt again the texts of a version that was in force (an earlier adoption's, or the
    shipped plan's). Written against the version the office saw in force, as any adoption is."""

    version: Version = Field(description="the version to go back to: the shipped one, or one an adoption put in force")
    reason: LongText = Field(min_length=1, description="why (7.1.5)")
    previous_version: Version = Field(description="the version in force as the page showed it: the rollback takes "
                                                  "effect only if it is still in force when the rollback is read")


class AdoptionWritten(Contract):
    """202 of POST /plan/adoptions and /plan/rollbacks: the adoption is on the log. Whether it took effect is
    decided as every process reads it (a conflict with an adoption written before it is refused): GET /plan's
    history says, by its id."""

    id: RecordId
    version: Version
    previous_version: Version
    rollback_of: ShortText | None = None
    whatif: WhatIfSummary | None = None
