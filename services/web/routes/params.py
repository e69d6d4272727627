"""Path parameters: ids, refused with a 422 naming them unless they look like one (the id rules of
topics.models, stated once there)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from topics.models import ID_PATTERN, RECORD_ID_MAX, USER_NAME_MAX, USER_NAME_PATTERN

IncidentId = Annotated[str, Path(min_length=1, max_length=RECORD_ID_MAX, pattern=ID_PATTERN)]
UserNameParam = Annotated[str, Path(min_length=1, max_length=USER_NAME_MAX, pattern=USER_NAME_PATTERN)]
RunId = Annotated[str, Path(min_length=1, max_length=16, pattern=r"^[a-z0-9]+$")]  # services.drill_runner.new_run_id
UnitIdParam = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]  # a plan unit's id
RecordIdParam = Annotated[str, Path(min_length=1, max_length=RECORD_ID_MAX, pattern=ID_PATTERN)]
