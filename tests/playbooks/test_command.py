"""The command structure as data (issue 20 item 1): one row per rule, with its section.

The expected tables are written here from the plan text (general-emergency-plan-2022.txt 2.3.1, 2.3.3,
2.3.6, 8.3, 4.1.4, 4.1.7, 4.3.1), not read back from command.yaml, so a data edit that changes a
mapping shows up as a failing row."""

from __future__ import annotations

import shutil

import pytest
import yaml

from playbooks.command import TEMPORARY, command_for, implies_foreign, key_area, key_areas_in
from playbooks.plan import DATA_DIR, PlanError, load_plan

# type -> (HQ of 2.3.1 or temporary (2.3.3), special plans of 8.3, the HQ link is our reading)
# our reading = False: the names themselves tie them (the type's name or 分类 is the HQ's subject).
EXPECTED: dict[str, tuple[str, list[str], bool]] = {
    # 自然灾害类
    "flood": ("hq_flood_drought", ["sp_flood"], False),  # 1 水灾 / 防汛抗旱 / 8.3 #2
    "drought": ("hq_flood_drought", ["sp_drought"], False),  # 2 旱灾 / 8.3 #3
    "forest_fire": ("hq_forest_fire", ["sp_forest_fire"], False),  # 3 / 森林防火 / #6
    "destructive_earthquake": ("hq_earthquake_relief", ["sp_destructive_earthquake"], False),  # 4 / 抗震 / #1
    "meteorological_disaster": ("hq_meteorological_disaster", ["sp_meteorological", "sp_snow_road_traffic"], False),
    "geological_disaster": (TEMPORARY, [], False),  # 6: no HQ named for 地质灾害
    "forest_pest_incident": ("hq_animal_plant_epidemics", [], True),  # 7
    "agricultural_plant_epidemic": ("hq_animal_plant_epidemics", ["sp_plant_epidemic"], False),  # 8 / #31
    "agricultural_alien_species_invasion": ("hq_animal_plant_epidemics", [], True),  # 9
    # 事故灾难类
    "hazardous_chemicals_accident": ("hq_production_safety", ["sp_hazardous_chemicals"], True),  # 10 / #8
    "construction_incident": ("hq_construction_accidents", ["sp_construction"], False),  # 11 / #15
    "fire_accident": ("hq_fire_safety", ["sp_fire_accident"], False),  # 12 / 消防安全 / #14
    "road_traffic_accident": ("hq_traffic_safety", ["sp_road_traffic_accident"], False),  # 13 / #13
    "rail_transit_incident": ("hq_traffic_safety", ["sp_rail_transit"], True),  # 14 / #25
    "bus_operation_incident": ("hq_traffic_safety", [], True),  # 15
    "waterway_traffic_incident": ("hq_traffic_safety", [], True),  # 16
    "water_supply_incident": ("hq_public_facilities", ["sp_urban_water_supply", "sp_village_water_supply"], False),
    "drainage_incident": ("hq_public_facilities", ["sp_urban_drainage"], False),  # 18 / #17
    "power_incident": ("hq_power_accidents", ["sp_power"], False),  # 19 / 电力事故 / #19
    "gas_accident": ("hq_public_facilities", ["sp_gas"], False),  # 20 / #20
    "heating_accident": ("hq_public_facilities", ["sp_heating"], False),  # 21 / #21
    "underground_pipeline_incident": ("hq_public_facilities", ["sp_underground_pipeline"], False),  # 22 / #18
    "road_incident": ("hq_public_facilities", ["sp_road_repair"], False),  # 23 / #10
    "bridge_incident": ("hq_public_facilities", ["sp_bridge_municipal", "sp_bridge_water"], False),  # 24 / #11, #32
    "communication_network_incident": ("hq_communications_support", [], False),  # 25 / 通信保障
    "information_security_incident": (TEMPORARY, ["sp_cyber_security"], False),  # 26 / #23
    "civil_defense_works_accident": ("hq_civil_defense_works", ["sp_civil_defense_works"], False),  # 27 / #12
    "special_equipment_accident": ("hq_production_safety", ["sp_special_equipment"], True),  # 28 / #9
    "radiation_accident": (TEMPORARY, ["sp_nuclear_radioactive"], False),  # 29 / #24
    "nuclear_incident": (TEMPORARY, ["sp_nuclear_radioactive"], False),  # 30 / #24
    "heavy_air_pollution": ("hq_heavy_air_pollution", ["sp_environment"], False),  # 31 / 空气重污染 / #22
    "environmental_incident": (TEMPORARY, ["sp_environment"], True),  # 32 / #22
    "civil_aircraft_crash": (TEMPORARY, [], True),  # 33
    # 公共卫生类
    "major_infectious_disease": ("hq_public_health", ["sp_infectious_disease"], False),  # 34 / #29
    "unexplained_mass_illness": ("hq_public_health", [], False),  # 35
    "food_safety_incident": ("hq_public_health", ["sp_food_poisoning"], True),  # 36 / #27
    "occupational_poisoning": ("hq_public_health", ["sp_occupational_poisoning"], False),  # 37 / #28
    "major_animal_epidemic": ("hq_animal_plant_epidemics", ["sp_animal_epidemic"], False),  # 38 / #30
    "drug_safety_incident": ("hq_public_health", [], True),  # 39
    "vaccine_safety_incident": ("hq_public_health", [], True),  # 40
    # 社会安全类
    "terrorist_attack": ("hq_counter_terrorism_criminal", ["sp_terrorist_attack"], False),  # 41 / 反恐 / #35
    "criminal_case": ("hq_counter_terrorism_criminal", [], False),  # 42 / 刑事案件
    "daily_necessities_supply": (TEMPORARY, [], False),  # 43: no HQ for 经济安全事件
    "grain_supply": (TEMPORARY, ["sp_grain_supply"], False),  # 44 / #7
    "energy_resources_supply": (TEMPORARY, [], False),  # 45
    "financial_incident": (TEMPORARY, [], False),  # 46
    "foreign_related_incident": ("hq_foreign_related_incidents", ["sp_foreign_related"], False),  # 47 / #36
    "petition_gathering_mass_incident": ("hq_mass_incidents", ["sp_mass_petition"], False),  # 48 / #33
    "ethnic_religious_mass_incident": ("hq_mass_incidents", ["sp_ethnic_religious"], False),  # 49 / #34
    "campus_safety_incident": ("hq_mass_incidents", ["sp_campus_safety"], False),  # 50 分类 群体性事件 / #37
    "news_public_opinion_incident": (TEMPORARY, ["sp_news_release"], False),  # 51 / #38
    "tourism_incident": (TEMPORARY, [], False),  # 52
}

# 2.3.1's 19 HQs, named as the plan writes them, and the host unit we chose for each (2.3.4 names none)
HOSTS: dict[str, tuple[str, str]] = {
    "hq_heavy_air_pollution": ("通州区空气重污染应急工作小组", "district_ecology_environment_bureau"),
    "hq_foreign_related_incidents": ("通州区涉外突发事件应急工作小组", "district_foreign_affairs_office"),
    "hq_mass_incidents": ("通州区群体性事件应急工作小组", "district_political_legal_commission"),
    "hq_counter_terrorism_criminal": ("通州区反恐和刑事案件应急指挥部", "tongzhou_police"),
    "hq_communications_support": ("通州区通信保障应急工作小组", "district_economy_it_bureau"),
    "hq_construction_accidents": ("通州区建筑工程事故应急工作小组", "district_housing_construction_commission"),
    "hq_public_health": ("通州区突发公共卫生事件应急工作小组", "district_health_commission"),
    "hq_animal_plant_epidemics": ("通州区重大动植物疫情应急工作小组", "district_agriculture_rural_bureau"),
    "hq_flood_drought": ("通州区防汛抗旱应急指挥部", "district_emergency_bureau"),
    "hq_traffic_safety": ("通州区交通安全应急工作小组", "tongzhou_traffic_police"),
    "hq_civil_defense_works": ("通州区人防工程事故应急工作小组", "district_civil_air_defense_office"),
    "hq_power_accidents": ("通州区电力事故应急工作小组", "district_urban_management_commission"),
    "hq_public_facilities": ("通州区城市公共设施事故应急工作小组", "district_urban_management_commission"),
    "hq_forest_fire": ("通州区森林防火应急指挥部", "district_emergency_bureau"),
    "hq_emergency_rescue": ("通州区突发事件应急救援工作小组", "district_emergency_bureau"),
    "hq_production_safety": ("通州区安全生产事故应急指挥部", "district_emergency_bureau"),
    "hq_fire_safety": ("通州区消防安全应急指挥部", "tongzhou_fire_rescue"),
    "hq_earthquake_relief": ("通州区抗震应急工作小组", "district_emergency_bureau"),
    "hq_meteorological_disaster": ("通州区气象灾害防御工作领导小组", "district_meteorological_bureau"),
}


@pytest.fixture(scope="module")
def command(plan):
    return plan.command


# --- 2.3.6 x 2.3.1 x 8.3: the HQ and plans of every type ---------------------------------------


def test_the_expected_table_covers_table_2_3_6(plan):
    assert sorted(EXPECTED) == sorted(t.id for t in plan.table_types)
    assert len(EXPECTED) == 52


@pytest.mark.parametrize("type_id", [t.id for t in load_plan().table_types])  # generated from the data
def test_the_hq_and_plans_of_each_type(plan, type_id):  # 2.3.1, 2.3.3, 2.3.6, 8.3
    hq, plans, our_choice = EXPECTED[type_id]
    c = plan.command_for(type_id)
    assert (c.hq_id, [p.id for p in c.plans], c.hq_our_choice) == (hq, plans, our_choice)
    assert c.temporary == (hq == TEMPORARY)
    # every answer says why, with sections: the HQ's (2.3.1 or 2.3.3) and 8.3 for the plans
    sections = {r.section for r in c.reasons}
    assert ("2.3.3" if c.temporary else "2.3.1") in sections and "8.3" in sections
    assert all(r.text for r in c.reasons)


def test_the_counts_of_the_plan_and_of_our_choices(plan, command):
    entries = [command.type_by_id[t.id] for t in plan.table_types]
    by_plan = [e for e in entries if not e.hq.our_choice]
    assert (len(command.hqs), len(command.special_plans), len(entries)) == (19, 38, 52)
    assert (len(by_plan), len(entries) - len(by_plan)) == (40, 12)
    assert sum(e.hq.id == TEMPORARY for e in entries) == 12
    # every special plan of 8.3 stands behind some type
    assert {link.id for e in entries for link in e.plans} == {p.id for p in command.special_plans}


@pytest.mark.parametrize(("hq_id", "name", "host"), [(k, *v) for k, v in HOSTS.items()], ids=list(HOSTS))
def test_each_special_hq_its_name_and_host(command, plan, hq_id, name, host):  # 2.3.1, 2.3.4
    hq = command.hq_by_id[hq_id]
    assert (hq.name, hq.host.unit, hq.section) == (name, host, "2.3.1")
    assert plan.units[hq_id].name == name and plan.units[hq_id].kind == "command"
    assert hq.host.our_choice, "2.3.4 names no host department: every host is our reading"


def test_a_special_hq_is_commanded_by_the_district_leader_with_the_hosts_head_as_deputy(plan):  # 2.3.1
    c = plan.command_for("gas_accident")
    assert (c.hq_name, c.host_unit, c.deputy_units) == (
        "通州区城市公共设施事故应急工作小组", "district_urban_management_commission", ("district_urban_management_commission",))
    assert [(m.role, m.who, m.section) for m in c.commanders] == [
        ("总指挥", "分管区领导", "2.3.1"), ("副总指挥", "主办部门的行政一把手（区城市管理委）", "2.3.1")]
    assert c.host_our_choice and c.our_choice and not c.hq_our_choice


@pytest.mark.parametrize(("type_id", "deputy"), [
    ("tourism_incident", "区文化和旅游局"),
    ("financial_incident", "区金融办"),
    ("geological_disaster", "区应急局、市规划自然资源委通州分局"),
    ("other", "区应急办"),  # 其他: 区应急办 until it has named the competent department
])
def test_a_type_with_no_hq_gets_the_temporary_hq(plan, type_id, deputy):  # 2.3.3
    c = plan.command_for(type_id)
    assert (c.hq_id, c.hq_name, c.temporary, c.host_unit, c.host_our_choice) == (
        TEMPORARY, "临时应急指挥部", True, None, None)
    assert c.deputy_units == tuple(plan.types[type_id].lead_units)
    assert [(m.role, m.who, m.section) for m in c.commanders] == [
        ("总指挥", "分管区领导", "2.3.3"), ("副总指挥", f"主责部门主要负责同志（{deputy}）", "2.3.3")]
    assert next(r for r in c.reasons if r.rule == "command.temporary_hq").section == "2.3.3"


def test_command_for_is_a_pure_function_of_the_file(command):
    c = command_for(command, "flood", ["district_emergency_bureau", "district_water_bureau"])
    assert c.hq_id == "hq_flood_drought" and c.commanders[1].who == "主办部门的行政一把手（district_emergency_bureau）"
    assert command_for(command, "flood") == command_for(command, "flood")


@pytest.mark.parametrize(("plan_id", "seq", "name", "drafted_by"), [
    ("sp_destructive_earthquake", 1, "通州区破坏性地震应急预案", "district_emergency_bureau"),
    ("sp_grain_supply", 7, "通州区粮食供给应急预案", "district_commerce_bureau"),  # listed under 自然灾害类
    ("sp_bridge_municipal", 11, "通州区桥梁突发事故应急预案-市政", "district_urban_management_commission"),
    ("sp_construction", 15, "通州区建筑施工突发事故应急预案", "district_housing_construction_commission"),  # 区住建委
    ("sp_nuclear_radioactive", 24, "通州区核事件、放射性污染突发事件应急预案", "district_ecology_environment_bureau"),
    ("sp_bridge_water", 32, "通州区桥梁突发事故应急预案-水务", "district_water_bureau"),
    ("sp_foreign_related", 36, "通州区涉外突发事件应急预案", "district_foreign_affairs_office"),  # 区外事办
    ("sp_news_release", 38, "通州区突发事件新闻发布应急预案", "district_publicity_dept"),
])
def test_special_plans_as_8_3_lists_them(command, plan_id, seq, name, drafted_by):  # 8.3
    p = command.plan_by_id[plan_id]
    assert (p.seq, p.name, p.drafted_by, p.section) == (seq, name, drafted_by, "8.3")


def test_8_3_is_complete_and_in_order(command):
    assert [p.seq for p in command.special_plans] == list(range(1, 39))
    assert [p.group for p in command.special_plans] == (
        ["natural_disaster"] * 7 + ["accident_disaster"] * 19 + ["public_health"] * 6 + ["social_security"] * 6)


# --- key areas: 4.1.4, 4.1.7, 4.3.1 ----------------------------------------------------------


@pytest.mark.parametrize(("text", "area"), [
    ("北京城市副中心", "city_sub_center"),
    ("城市副中心", "city_sub_center"),
    ("城市副中心核心区", "city_sub_center"),  # issue 20: what people type
    ("副中心", "city_sub_center"),
    ("城市 副中心", "city_sub_center"),
    ("副中心行政办公区", "admin_office_area"),  # longest first: not 副中心
    ("城市副中心行政办公区东侧", "admin_office_area"),
    ("行政办公区", "admin_office_area"),
    ("京津冀临界地区", "jjj_border_areas"),
    ("北三县", "jjj_border_areas"),
    ("燕郊", "jjj_border_areas"),
    ("人员密集场所", "crowded_places"),
    ("环球影城", "crowded_places"),
    ("梨园镇", None),
    ("", None),
])
def test_key_area_aliases(plan, command, text, area):  # 4.1.4, 4.1.7, 4.3.1
    found = plan.key_area(text)
    assert (found.id if found else None) == area
    assert key_area(command, text) == found


def test_longest_alias_wins(command):
    names = [n for n, _ in command.aliases_longest_first]
    assert names.index("城市副中心核心区") < names.index("城市副中心") < names.index("副中心")


def test_key_areas_in_a_reports_places(command):
    assert [a.id for a in key_areas_in(command, ["副中心", "城市副中心核心区", "环球影城", "梨园镇"])] == [
        "city_sub_center", "crowded_places"]


@pytest.mark.parametrize(("area", "rules"), [
    ("city_sub_center", {("report_at_once", "4.1.4", None, False), ("notify_party", "4.1.7", "party_city_sub_center", False),
                         ("raise_level", "4.3.1", None, False)}),
    ("admin_office_area", {("report_at_once", "4.1.4", None, False),
                           ("notify_party", "4.1.7", "party_admin_office_area", False),
                           ("raise_level", "4.3.1", None, True)}),  # 4.3.1 writes 北京城市副中心等重点地区
    ("jjj_border_areas", {("notify_party", "4.1.7", "party_jjj_border_areas", False),
                          ("joint_field_hq", "4.4.3", None, False)}),
    ("crowded_places", {("report_at_once", "4.1.4", None, False), ("raise_level", "4.3.1", None, True)}),
])
def test_what_each_key_area_implies(command, area, rules):
    a = next(k for k in command.key_areas if k.id == area)
    assert {(i.rule, i.section, i.unit, i.our_choice) for i in a.implies} == rules


def test_every_key_area_name_of_the_notification_rules_is_recognised(plan):  # 4.1.7
    for rule in plan.notifications:
        for name in rule.when.key_area_contains or []:
            area = plan.key_area(name)
            assert area is not None, name
            parties = {i.unit for i in area.implies if i.rule == "notify_party"}
            assert parties == set(rule.units), (rule.id, name)


# --- 涉外: 4.1.4 ------------------------------------------------------------------------------


def test_foreign_related_types_imply_foreign_involvement(plan, command):  # 4.1.4
    assert [t.id for t in plan.types.values() if implies_foreign(command, t.id)] == ["foreign_related_incident"]
    fi = command.foreign_involvement
    assert (fi.section, fi.field_hq_section) == ("4.1.4", "4.4.3")
    notify_foreign = next(r for r in plan.notifications if r.id == "notify.foreign")
    assert fi.units == notify_foreign.units  # 区台办, 区外事办, 通州公安分局
    assert fi.field_hq_units == ["district_foreign_affairs_office", "district_publicity_dept"]


# --- validation: a bad command.yaml is refused at load, naming the entry ------------------------


@pytest.fixture
def data(tmp_path):
    shutil.copytree(DATA_DIR, tmp_path / "data")
    return tmp_path / "data"


def _edit(data, change):
    path = data / "command.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _hq(doc, hq_id):
    return next(h for h in doc["hqs"] if h["id"] == hq_id)


def _type(doc, type_id):
    return next(t for t in doc["types"] if t["type"] == type_id)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: _hq(d, "hq_flood_drought")["host"].update(unit="district_water_board"),
     "command.yaml: hqs[hq_flood_drought].host.unit: unknown unit 'district_water_board'"),
    (lambda d: d["special_plans"][0].update(drafted_by="district_quake_bureau"),
     "command.yaml: special_plans[sp_destructive_earthquake].drafted_by: unknown unit 'district_quake_bureau'"),
    (lambda d: _type(d, "flood").update(type="floods"),
     "command.yaml: types[floods]: unknown type 'floods'"),
    (lambda d: d["types"].remove(_type(d, "gas_accident")),
     "command.yaml: types: no entry for type 'gas_accident' of table 2.3.6"),
    (lambda d: d["types"].remove(_type(d, "flood")),
     "command.yaml: types: no entry for type 'flood' of table 2.3.6"),
    (lambda d: _hq(d, "hq_fire_safety").update(name="通州区消防应急指挥部"),
     "command.yaml: hqs[hq_fire_safety].name: '通州区消防应急指挥部' but units.yaml writes '通州区消防安全应急指挥部'"),
    (lambda d: (_hq(d, "hq_fire_safety").update(id="hq_fire"), _type(d, "fire_accident")["hq"].update(id="hq_fire")),
     "command.yaml: hqs[hq_fire]: not a unit of kind command in units.yaml"),
    (lambda d: d["key_areas"][0]["implies"][1].update(unit="party_sub_centre"),
     "command.yaml: key_areas[city_sub_center].implies: unknown unit 'party_sub_centre'"),
    (lambda d: d["foreign_involvement"]["implied_by_types"][0].update(id="foreign_incident"),
     "command.yaml: foreign_involvement.implied_by_types: unknown type 'foreign_incident'"),
], ids=["unknown-host-unit", "unknown-drafting-unit", "unknown-type", "missing-type", "missing-first-type",
        "hq-name-differs", "hq-not-a-unit", "unknown-party", "unknown-foreign-type"])
def test_a_bad_reference_is_refused_naming_the_entry(data, change, message):
    _edit(data, change)
    with pytest.raises(PlanError) as err:
        load_plan(data)
    assert message in str(err.value)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["hqs"].append(dict(_hq(d, "hq_flood_drought"))), "hqs: duplicate id 'hq_flood_drought'"),
    (lambda d: d["special_plans"].append({**d["special_plans"][0], "seq": 38}),
     "special_plans: duplicate id 'sp_destructive_earthquake'"),
    (lambda d: d["types"].append(dict(_type(d, "flood"))), "types: duplicate id 'flood'"),
    (lambda d: d["key_areas"][1]["aliases"].append("副中心"), "key_areas (names and aliases): duplicate id '副中心'"),
    (lambda d: _type(d, "flood")["hq"].update(id="hq_floods"), "types[flood].hq: unknown HQ 'hq_floods'"),
    (lambda d: _type(d, "flood")["plans"][0].update(id="sp_floods"),
     "types[flood].plans: unknown special plan 'sp_floods'"),
    (lambda d: d["key_areas"][0]["implies"][1].pop("unit"), "unit: given for notify_party, and only for it"),
], ids=["duplicate-hq", "duplicate-plan", "duplicate-type", "alias-in-two-areas", "unknown-hq", "unknown-plan",
        "party-without-unit"])
def test_a_bad_file_is_refused_naming_the_entry(data, change, message):
    _edit(data, change)
    with pytest.raises(PlanError) as err:
        load_plan(data)
    assert str(err.value).startswith("command.yaml: ") and message in str(err.value)
