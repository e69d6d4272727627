"""Table 2.3.6 突发事件处置分工 of the 2022 general plan, transcribed by hand.

Each row below was copied from the plan text (2.3.6), not generated from the YAML:
序号, 主要种类 (without its （…） note), and 处置主责部门 in the table's order.
The test checks playbooks/data/incident_types.yaml against it, resolving lead unit
ids to Chinese names through playbooks/data/units.yaml.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

DATA = Path(__file__).resolve().parents[2] / "playbooks/data"


def _load(name: str) -> dict:
    with open(DATA / name, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


UNITS = _load("units.yaml")["units"]
TYPES = _load("incident_types.yaml")["types"]
UNIT_NAME = {u["id"]: u["name"] for u in UNITS}
TYPE_BY_SEQ = {t["seq"]: t for t in TYPES}

# (序号, type id, 主要种类, 处置主责部门) — transcribed from 2.3.6.
ROWS = [
    # 自然灾害类
    (1, "flood", "水灾", ["区应急局", "区水务局"]),
    (2, "drought", "旱灾", ["区应急局", "区水务局"]),
    (3, "forest_fire", "森林火灾", ["区应急局", "区园林绿化局"]),
    (4, "destructive_earthquake", "破坏性地震", ["区应急局", "区地震局"]),
    (5, "meteorological_disaster", "气象灾害", ["区应急局", "区气象局", "区园林绿化局"]),
    (6, "geological_disaster", "突发地质灾害", ["区应急局", "市规划自然资源委通州分局"]),
    (7, "forest_pest_incident", "突发林木有害生物事件", ["区园林绿化局"]),
    (8, "agricultural_plant_epidemic", "农业植物疫情", ["区农业农村局"]),
    (9, "agricultural_alien_species_invasion", "农业领域外来生物入侵", ["区农业农村局"]),
    # 事故灾难类
    (10, "hazardous_chemicals_accident", "危险化学品事故", ["区应急局"]),
    (11, "construction_incident", "建设工程施工突发事件", ["区住房和城乡建设委"]),
    (12, "fire_accident", "火灾事故", ["通州消防救援支队"]),
    (13, "road_traffic_accident", "道路交通事故", ["通州交通支队", "区城市管理委", "区水务局", "通州公路分局"]),
    (14, "rail_transit_incident", "轨道交通运营突发事件", ["区交通局"]),
    (15, "bus_operation_incident", "公共汽车运营突发事件", ["区交通局"]),
    (16, "waterway_traffic_incident", "水上交通突发事件", ["区交通局", "区水务局"]),
    (17, "water_supply_incident", "供水突发事件", ["区水务局"]),
    (18, "drainage_incident", "排水突发事件", ["区水务局"]),
    (19, "power_incident", "电力突发事件", ["区城市管理委"]),
    (20, "gas_accident", "燃气事故", ["区城市管理委"]),
    (21, "heating_accident", "供热事故", ["区城市管理委"]),
    (22, "underground_pipeline_incident", "地下管线突发事件", ["区城市管理委"]),
    (23, "road_incident", "道路突发事件", ["区城市管理委"]),
    (24, "bridge_incident", "桥梁突发事件", ["区城市管理委", "区水务局"]),
    (25, "communication_network_incident", "通信网络突发事件", ["区经信局", "区通管办"]),
    (26, "information_security_incident", "信息安全事件", ["区委网信办"]),
    (27, "civil_defense_works_accident", "人防工程事故", ["区人防办"]),
    (28, "special_equipment_accident", "特种设备事故", ["区市场监管局"]),
    (29, "radiation_accident", "辐射事故", ["区生态环境局"]),
    (30, "nuclear_incident", "核事件", ["区生态环境局"]),
    (31, "heavy_air_pollution", "重污染天气", ["区生态环境局"]),
    (32, "environmental_incident", "突发环境事件", ["区生态环境局"]),
    (33, "civil_aircraft_crash", "民用航空器空难事件", ["通州消防救援支队"]),
    # 公共卫生类
    (34, "major_infectious_disease", "重大传染病疫情", ["区卫生健康委"]),
    (35, "unexplained_mass_illness", "群体性不明原因疾病", ["区卫生健康委"]),
    (36, "food_safety_incident", "食品安全事件", ["区市场监管局"]),
    (37, "occupational_poisoning", "职业中毒事件", ["区卫生健康委"]),
    (38, "major_animal_epidemic", "重大动物疫情", ["区农业农村局"]),
    (39, "drug_safety_incident", "药品安全事件", ["区市场监管局"]),
    (40, "vaccine_safety_incident", "疫苗安全事件", ["区市场监管局"]),
    # 社会安全类
    (41, "terrorist_attack", "恐怖袭击事件", ["通州公安分局"]),
    (42, "criminal_case", "刑事案件", ["通州公安分局"]),
    (43, "daily_necessities_supply", "生活必需品供给事件", ["区商务局"]),
    (44, "grain_supply", "粮食供给事件", ["区商务局"]),
    (45, "energy_resources_supply", "能源资源供给事件", ["区城市管理委"]),
    (46, "financial_incident", "金融突发事件", ["区金融办"]),
    # The table writes 区政府外事办; units.yaml keeps it as an alias of 区外事办.
    (47, "foreign_related_incident", "涉外突发事件", ["区外事办"]),
    (48, "petition_gathering_mass_incident", "上访、聚集等群体性事件", ["区委政法委"]),
    (49, "ethnic_religious_mass_incident", "民族宗教群体性事件", ["区民政局", "区委政法委"]),
    (50, "campus_safety_incident", "影响校园安全稳定事件", ["区教委"]),
    (51, "news_public_opinion_incident", "新闻舆论事件", ["区委宣传部"]),
    (52, "tourism_incident", "旅游突发事件", ["区文化和旅游局"]),
]

STREETS_AND_TOWNSHIPS = [
    "中仓街道", "新华街道", "北苑街道", "玉桥街道", "潞源街道", "通运街道", "文景街道",
    "九棵树街道", "临河里街道", "杨庄街道", "潞邑街道",
    "永顺镇", "梨园镇", "宋庄镇", "张家湾镇", "漷县镇", "永乐店镇", "西集镇", "潞城镇",
    "台湖镇", "马驹桥镇",
    "于家务回族乡",
]

CATEGORIES = {
    "natural_disaster": "自然灾害类",
    "accident_disaster": "事故灾难类",
    "public_health": "公共卫生类",
    "social_security": "社会安全类",
}
KINDS = {"committee", "office", "department", "command", "police_fire", "street", "city", "party", "other"}
FAMILIES = {None, "production_safety", "rail_transit", "environment", "earthquake", "geological"}
CJK = re.compile(r"^[\u3400-\u9fff（）、]+$")


@pytest.mark.parametrize(
    "seq, type_id, name, lead_names",
    [pytest.param(*row, id=f"2.3.6-{row[0]}-{row[1]}") for row in ROWS],
)
def test_type_row(seq, type_id, name, lead_names):
    t = TYPE_BY_SEQ.get(seq)
    assert t is not None, f"row {seq} missing"
    assert t["id"] == type_id
    assert t["name"] == name
    assert [UNIT_NAME[u] for u in t["lead_units"]] == lead_names


def test_transcription_is_complete():
    assert [r[0] for r in ROWS] == list(range(1, 53))


def test_exactly_52_types():
    assert len(TYPES) == 52


def test_seq_is_1_to_52_unique():
    assert sorted(t["seq"] for t in TYPES) == list(range(1, 53))


def test_type_ids_unique_and_ascii():
    ids = [t["id"] for t in TYPES]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", i) for i in ids)


def test_type_fields():
    for t in TYPES:
        assert t["category"] in CATEGORIES, t["id"]
        assert t["category_name"] == CATEGORIES[t["category"]], t["id"]
        assert isinstance(t["subcategory"], str) and t["subcategory"], t["id"]
        assert t["note"] is None or (isinstance(t["note"], str) and t["note"]), t["id"]
        assert "（" not in t["name"] and "(" not in t["name"], t["id"]
        assert isinstance(t["lead_units_open_ended"], bool), t["id"]
        assert t["grading_family"] in FAMILIES, t["id"]
        assert t["lead_units"], t["id"]


def test_every_lead_unit_exists():
    for t in TYPES:
        for u in t["lead_units"]:
            assert u in UNIT_NAME, f"{t['id']}: unknown unit {u}"


def test_open_ended_only_row_5():
    # Only row 5 (气象灾害) ends its list with 等部门.
    assert [t["seq"] for t in TYPES if t["lead_units_open_ended"]] == [5]


def test_notes():
    notes = {t["seq"]: t["note"] for t in TYPES if t["note"] is not None}
    assert notes == {
        5: "暴雨、大风、沙尘暴、浓雾、冰雪、雷电、冰雹、高温等",
        6: "地面塌陷等",
        25: "公网、专网",
        34: "鼠疫、炭疽、霍乱、非典型肺炎、流感、新冠肺炎等",
        38: "高致病性禽流感、口蹄疫等",
    }


def test_grading_families():
    fam = {t["name"]: t["grading_family"] for t in TYPES}
    production = ["危险化学品事故", "建设工程施工突发事件", "火灾事故", "道路交通事故", "公共汽车运营突发事件",
                  "水上交通突发事件", "燃气事故", "供热事故", "特种设备事故", "人防工程事故", "民用航空器空难事件"]
    expected = {n: "production_safety" for n in production}
    expected.update({"轨道交通运营突发事件": "rail_transit", "突发环境事件": "environment", "辐射事故": "environment",
                     "破坏性地震": "earthquake", "突发地质灾害": "geological"})
    for name, family in fam.items():
        assert family == expected.get(name), name


def test_merged_subcategories():
    sub = {t["seq"]: t["subcategory"] for t in TYPES}
    assert sub[28] == "公共设施和设备事故"
    assert sub[36] == sub[37] == "食品安全和职业危害"
    assert sub[41] == "恐怖袭击事件"
    assert sub[42] == "刑事案件"
    assert {sub[s] for s in (43, 44, 45, 46)} == {"经济安全事件"}


def test_unit_ids_and_names_unique():
    ids = [u["id"] for u in UNITS]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", i) for i in ids)
    spellings = [u["name"] for u in UNITS] + [a for u in UNITS for a in u.get("aliases") or []]
    assert len(spellings) == len(set(spellings)), "a name or alias is used twice"


def test_unit_fields():
    for u in UNITS:
        assert u["kind"] in KINDS, u["id"]
        assert isinstance(u["aliases"], list), u["id"]
        assert isinstance(u["section"], str) and re.fullmatch(r"\d+(\.\d+)*", u["section"]), u["id"]


def test_unit_names_are_cjk():
    for u in UNITS:
        for n in [u["name"], *u["aliases"]]:
            assert isinstance(n, str) and CJK.match(n), f"{u['id']}: {n!r}"


def test_22_streets_and_townships():
    streets = [u for u in UNITS if u["kind"] == "street"]
    assert sorted(u["name"] for u in streets) == sorted(STREETS_AND_TOWNSHIPS)
    for u in streets:
        assert re.fullmatch(r"(street|town|township)_[a-z]+", u["id"]), u["id"]
        assert u["section"] == "2.4"


@pytest.mark.parametrize(
    "unit_id, name",
    [
        ("district_emergency_committee", "区应急委"),
        ("district_emergency_office", "区应急办"),
        ("city_emergency_office", "市应急办"),
        ("district_emergency_bureau", "区应急局"),
        ("district_publicity_dept", "区委宣传部"),
        ("city_publicity_dept", "市委宣传部"),
        ("district_taiwan_affairs_office", "区台办"),
        ("district_foreign_affairs_office", "区外事办"),
        ("tongzhou_police", "通州公安分局"),
        ("tongzhou_fire_rescue", "通州消防救援支队"),
        ("district_transport_bureau", "区交通局"),
        ("district_health_commission", "区卫生健康委"),
        ("district_water_bureau", "区水务局"),
        ("party_city_sub_center", "北京城市副中心"),
        ("party_admin_office_area", "行政办公区"),
        ("party_jjj_border_areas", "京津冀临界地区"),
        ("street_zhongcang", "中仓街道"),
        ("town_liyuan", "梨园镇"),
        ("township_yujiawu", "于家务回族乡"),
    ],
)
def test_fixed_unit_ids(unit_id, name):
    assert UNIT_NAME.get(unit_id) == name


def test_parties_are_kind_party():
    kinds = {u["id"]: u["kind"] for u in UNITS}
    for pid in ("party_city_sub_center", "party_admin_office_area", "party_jjj_border_areas"):
        assert kinds[pid] == "party"


def test_table_spelling_of_foreign_affairs_office_is_an_alias():
    unit = next(u for u in UNITS if u["id"] == "district_foreign_affairs_office")
    assert "区政府外事办" in unit["aliases"]
