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
from services.drill_runner import DrillRun
from services.privacy import Sealer
from services.settings import Settings
from services.users import UserDirectory
from services.view import IncidentView
from services.web.publisher import Publisher
from services.web.rendering import Pages


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _plan(request: Request) -> Plan:
    return request.app.state.plan


def _clock(request: Request) -> Clock:
    return request.app.state.clock


def _sealer(request: Request) -> Sealer:
    return request.app.state.sealer


def _view(request: Request) -> IncidentView:
    return request.app.state.view


def _users(request: Request) -> UserDirectory:
    return request.app.state.users


def _publisher(request: Request) -> Publisher:
    return request.app.state.publisher


def _drills(request: Request) -> dict[str, DrillRun]:
    return request.app.state.drills


def _drill_tasks(request: Request) -> set[asyncio.Task]:
    return request.app.state.drill_tasks


def _pages(request: Request) -> Pages:
    return request.app.state.pages


SettingsDep = Annotated[Settings, Depends(_settings)]
PlanDep = Annotated[Plan, Depends(_plan)]
ClockDep = Annotated[Clock, Depends(_clock)]
SealerDep = Annotated[Sealer, Depends(_sealer)]
ViewDep = Annotated[IncidentView, Depends(_view)]
UsersDep = Annotated[UserDirectory, Depends(_users)]
PublisherDep = Annotated[Publisher, Depends(_publisher)]
DrillsDep = Annotated[dict[str, DrillRun], Depends(_drills)]
DrillTasksDep = Annotated[set[asyncio.Task], Depends(_drill_tasks)]
PagesDep = Annotated[Pages, Depends(_pages)]
