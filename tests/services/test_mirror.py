"""MirrorMaker 2's configuration and the mirror's lag (services/local/mirror.py, services/standby.py): no broker."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from services.local.kafka import REPO_ROOT
from services.local.mirror import mm2_properties, parse, render, topics_regex
from services.standby import MirrorLag, behind, mirror_lag, mirrored_topics
from topics.catalog import CATALOG

DEPLOYED = REPO_ROOT / "deploy" / "kafka" / "mirror" / "mm2.properties"


def test_the_mirrored_topics_are_the_catalog_and_the_changelog_and_nothing_else():
    pattern = re.compile(topics_regex(["yingji-incidents-changelog"]))
    for name in mirrored_topics("yingji"):
        assert pattern.fullmatch(name), name
    # Faust's leader topic, Kafka's and MM2's own, another app's changelog: not copied
    for name in ("yingji-__assignor-__leader", "__consumer_offsets", "mm2-offsets.primary.internal", "heartbeats",
                 "yingjiXincidents", "other-incidents-changelog"):
        assert not pattern.fullmatch(name), name
    assert {spec.name for spec in CATALOG} | {"yingji-incidents-changelog"} == set(mirrored_topics("yingji"))


def test_a_backslash_survives_javas_properties_reading():
    props = {"primary->standby.topics": r"yingji\..*"}
    text = render(props)
    assert r"yingji\\..*" in text  # Java's Properties.load reads \\ as \ (and \. as .)
    assert parse(text) == props


def test_the_deployed_file_says_what_the_drill_runs_but_for_the_clusters_and_replication():
    deployed = parse(DEPLOYED.read_text(encoding="utf-8"))
    expected = mm2_properties(primary=deployed["primary.bootstrap.servers"],
                              standby=deployed["standby.bootstrap.servers"], groups=["yingji", "yingji-delivery"],
                              changelogs=["yingji-incidents-changelog"], replication=3)
    assert deployed == expected
    assert deployed["replication.policy.class"].endswith("IdentityReplicationPolicy")
    assert deployed["standby->primary.enabled"] == "false"
    assert deployed["sync.group.offsets.enabled"] == deployed["emit.checkpoints.enabled"] == "true"
    assert deployed["offset-syncs.topic.location"] == "target"


def test_mirror_maker_is_the_brokers_kafka_version():
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = [ET.parse(REPO_ROOT / "deploy" / "kafka" / p).find("m:properties/m:kafka.version", ns).text
               for p in ("pom.xml", "mirror/pom.xml")]
    assert version[0] == version[1] == "4.1.1"


def test_the_lag_counts_records_past_the_standbys_end_per_topic():
    primary = {("a", 0): 10, ("a", 1): 5, ("b", 0): 7, ("c", 0): 3}
    standby = {("a", 0): 8, ("a", 1): 5, ("b", 0): 9}  # b-0 ahead: MM2 wrote a record twice
    lag = mirror_lag(primary, standby)
    assert lag == MirrorLag({"a": 2, "b": 0, "c": 3}, (("c", 0),))
    assert lag.total == 5
    assert lag.line() == "5 records (c 3, a 2); 1 partitions not on the standby"
    assert mirror_lag(primary, primary).line() == "0 records"


def test_behind_counts_a_partition_without_an_offset_from_zero():
    assert behind({("t", 0): 10, ("t", 1): 4}, {("t", 0): 7}) == 3 + 4
