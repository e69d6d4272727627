"""What handlers read from the app: one dependency per thing create_app put on app.state.

Handlers take these as parameters (`view: ViewDep`), so a test can build an app with its own parts
(create_app's overrides) or call a handler with them directly.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request

from playbooks.plan import Plan
from services.clock import Clock
from services.drill_book import DrillBook
from services.ledger_book import CircularBook
from services.programme_book import ProgrammeBook
from playbooks.drills_config import DrillsFile
from playbooks.ledger.config import LedgerFile
from playbooks.warning.rules import WarningsFile
from services.duty.book import DutyBook
from services.warnings.book import WarningBook
from services.privacy import Sealer
from services.settings import Settings
from services.users import UserDirectory
from services.view import IncidentView
from services.web.district_map import DistrictMap
from services.web.publisher import Publisher
from services.web.rendering import Pages


def _state(name: str):
    """A dependency reading `request.app.state.<name>`."""

    def read(request: Request):
        return getattr(request.app.state, name)

    read.__name__ = f"app_state_{name}"
    return read


SettingsDep = Annotated[Settings, Depends(_state("settings"))]
PlanDep = Annotated[Plan, Depends(_state("plan"))]


def _of_plan(name: str):
    """A dependency reading a part of the plan in force: a revision adopted is read from the next request on
    (issue 24 item 3). Off the request's PlanDep, which FastAPI resolves once a request, so a switch between
    two dependencies cannot give a handler parts of two plans."""

    def read(plan: PlanDep) -> object:
        return getattr(plan, name)

    read.__name__ = f"plan_{name}"
    return read


ClockDep = Annotated[Clock, Depends(_state("clock"))]
SealerDep = Annotated[Sealer, Depends(_state("sealer"))]
ViewDep = Annotated[IncidentView, Depends(_state("view"))]
UsersDep = Annotated[UserDirectory, Depends(_state("users"))]
PublisherDep = Annotated[Publisher, Depends(_state("publisher"))]
DrillsDep = Annotated[DrillBook, Depends(_state("drills"))]
DrillTasksDep = Annotated[set[asyncio.Task], Depends(_state("drill_tasks"))]
DutyDep = Annotated[DutyBook, Depends(_state("duty"))]
PagesDep = Annotated[Pages, Depends(_state("pages"))]
AckKeyDep = Annotated[bytes, Depends(_state("ack_key"))]
WarningsDep = Annotated[WarningBook, Depends(_state("warnings"))]
WarningsConfigDep = Annotated[WarningsFile, Depends(_of_plan("warnings"))]
DistrictMapDep = Annotated[DistrictMap, Depends(_state("district_map"))]
LedgerConfigDep = Annotated[LedgerFile, Depends(_of_plan("ledger"))]
CircularsDep = Annotated[CircularBook, Depends(_state("circulars"))]
ProgrammeDep = Annotated[ProgrammeBook, Depends(_state("programme"))]
DrillsConfigDep = Annotated[DrillsFile, Depends(_of_plan("drills"))]
