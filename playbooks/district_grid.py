"""district_grid.yaml: where each street and township of units.yaml sits on the board's schematic map.

A plan file (Plan.district_grid), so a revision that adds or renames a street carries its cell in the same
adoption, and the loader refuses one whose grid does not fit its streets, naming file, line and field,
instead of a board that cannot place an incident's street. The map itself (the outline, the boxes of
longitude and latitude) is the web service's: services/web/district_map.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Street(Protocol):
    id: str
    name: str


class GridCell(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="the street's name as units.yaml writes it")
    col: int = Field(ge=0, description="0: the west")
    row: int = Field(ge=0, description="0: the north")


class DistrictGridFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cols: int = Field(gt=0)
    rows: int = Field(gt=0)
    gap: float = Field(0.0, ge=0, lt=0.5, description="of a cell's width and height, left empty on each side")
    cells: dict[str, GridCell] = Field(description="by the street's unit id (units.yaml, kind street)")

    @model_validator(mode="after")
    def _on_the_grid(self) -> "DistrictGridFile":
        taken: dict[tuple[int, int], str] = {}
        for uid, cell in self.cells.items():
            if cell.col >= self.cols or cell.row >= self.rows:
                raise ValueError(f"cells.{uid}: ({cell.col}, {cell.row}) is outside the {self.cols}x{self.rows} grid")
            at = (cell.col, cell.row)
            if at in taken:
                raise ValueError(f"cells.{uid}: ({at[0]}, {at[1]}) is {taken[at]}'s cell already")
            taken[at] = uid
        return self

    def problems(self, streets: Iterable[_Street]) -> list[str]:
        """What does not fit the plan's streets, as `path: message`: each street needs exactly one cell
        (a dict key: one at most), under its id and its name; a cell of no street is a mistake too."""
        by_id = {u.id: u for u in streets}
        out = [f"cells.{uid}: units.yaml has no street {uid!r}" for uid in self.cells if uid not in by_id]
        out += [f"cells: no cell for {uid} ({u.name})" for uid, u in by_id.items() if uid not in self.cells]
        out += [f"cells.{uid}.name: {cell.name}, units.yaml says {by_id[uid].name}"
                for uid, cell in self.cells.items() if uid in by_id and cell.name != by_id[uid].name]
        return out

    def fitted(self, streets: Iterable[_Street]) -> "DistrictGridFile":
        """This grid made to fit these streets, for a plan that carries no grid of its own (an adoption written
        before the grid was a plan file, read with the shipped grid): the cells of streets it does not have
        dropped, each name as its units.yaml writes it, and a street without a cell placed in the first free cell,
        row by row from the north-west (a row added below when none is free). Such a street is on the map, not
        where it lies; the adoption loads as the version it was, and the board places every street it has."""
        by_id = {u.id: u for u in streets}
        cells = {uid: cell.model_copy(update={"name": by_id[uid].name}) for uid, cell in self.cells.items()
                 if uid in by_id}
        taken = {(c.col, c.row) for c in cells.values()}
        rows = self.rows
        for uid in sorted(uid for uid in by_id if uid not in cells):
            at = next(((col, row) for row in range(rows) for col in range(self.cols) if (col, row) not in taken), None)
            if at is None:
                rows += 1
                at = (0, rows - 1)
            taken.add(at)
            cells[uid] = GridCell(name=by_id[uid].name, col=at[0], row=at[1])
        return DistrictGridFile(cols=self.cols, rows=rows, gap=self.gap, cells=cells)

    def as_yaml(self) -> str:
        """This grid as a plan file's text: what an adoption of before the grid was a plan file is in force with,
        written out for a revision over it (services/web/routes/whatif.py in_force_texts)."""
        import yaml

        return ("# the grid in force with an adoption of before district_grid.yaml was a plan file: the shipped grid\n"
                "# fitted to its streets (playbooks.district_grid DistrictGridFile.fitted)\n"
                + yaml.safe_dump(self.model_dump(mode="json"), allow_unicode=True, sort_keys=False))
