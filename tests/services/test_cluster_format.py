"""The local three-node cluster's nodes as they are formatted and configured (issue 22 item 1), without
starting them: `make test-cluster` starts them and kills one (tests/e2e/test_cluster.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from services.local.cluster import LocalCluster, node_ports
from services.local.kafka import BrokerError, LIB_DIR


def props(node) -> dict[str, str]:
    return dict(line.split("=", 1) for line in node.properties_file.read_text().splitlines() if "=" in line)


def meta(node) -> dict[str, str]:
    text = (node.log_dirs / "meta.properties").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_three_nodes_formatted_as_one_cluster_with_the_same_controllers(tmp_path):
    if not any(LIB_DIR.glob("kafka_2.13-*.jar")):
        pytest.fail("the Kafka jars are missing: run `make test`, which fetches them")
    cluster = LocalCluster(tmp_path, base_port=40100)
    for node in cluster.nodes.values():
        node.data_dir.mkdir(parents=True, exist_ok=True)
        node._write_properties()
    with ThreadPoolExecutor(3) as pool:  # Kafka's own StorageTool, as start() runs it
        list(pool.map(lambda n: n._format_once(LIB_DIR), cluster.nodes.values()))
    ids = {meta(n)["cluster.id"] for n in cluster.nodes.values()}
    assert ids == {cluster.quorum.cluster_id}
    assert {int(meta(n)["node.id"]) for n in cluster.nodes.values()} == {1, 2, 3}
    # each node's metadata directory id is the one the initial controllers name for it
    for node_id, _, dir_id in cluster.quorum.controllers:
        assert meta(cluster.nodes[node_id])["directory.id"] == dir_id
    for node in cluster.nodes.values():
        p = props(node)
        assert p["controller.quorum.bootstrap.servers"] == "127.0.0.1:40101,127.0.0.1:40103,127.0.0.1:40105"
        assert (p["default.replication.factor"], p["min.insync.replicas"], p["unclean.leader.election.enable"]) == ("3", "2", "false")
        assert p["offsets.topic.replication.factor"] == "3" and p["transaction.state.log.min.isr"] == "2"
    # the quorum is kept: the same data dir is the same cluster; other ports are refused, not re-formatted
    assert LocalCluster(tmp_path, base_port=40100).quorum == cluster.quorum
    with pytest.raises(BrokerError, match="keeps its ports"):
        LocalCluster(tmp_path, base_port=40200)


def test_node_ports_leave_each_controller_beside_its_broker():
    assert node_ports(9092) == [(9092, 9093), (9094, 9095), (9096, 9097)]
