"""A local Apache Kafka cluster: three combined broker+controller nodes (KRaft) on loopback, as
production runs it (README: replication factor 3, min.insync.replicas 2), each its own JVM.

    with LocalCluster(Path("/tmp/cluster"), base_port=19092) as cluster:
        use(cluster.bootstrap)          # 127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096
        cluster.kill(cluster.leader_of("yingji.incidents.reported", 0))
        cluster.restart(...)

Node i (1, 2, 3) listens on base_port + 2(i-1) and its controller on the port after. The quorum (one
cluster id, the three initial controllers with their directory ids) is written once under data_dir
and read again on every start, so a restarted cluster is the same cluster.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from kafka import KafkaAdminClient
from kafka.errors import KafkaError
from tenacity import Retrying, retry_if_exception_type, retry_if_result, stop_after_delay, wait_fixed

from services.local.kafka import LIB_DIR, LOG4J2_CONFIG, BrokerError, LocalKafka, Quorum, _java, ensure_tools

NODES = 3


def node_ports(base_port: int, nodes: int = NODES) -> list[tuple[int, int]]:
    """(broker port, controller port) of nodes 1..n."""
    return [(base_port + 2 * i, base_port + 2 * i + 1) for i in range(nodes)]


class LocalCluster:
    def __init__(self, data_dir: Path, base_port: int = 9092, *, nodes: int = NODES, heap: str = "384m") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ports = node_ports(base_port, nodes)
        self.quorum = self._quorum([(i + 1, cport) for i, (_, cport) in enumerate(ports)])
        self.nodes = {i + 1: LocalKafka(self.data_dir / f"node-{i + 1}", port=port, controller_port=cport, heap=heap,
                                        node_id=i + 1, quorum=self.quorum)
                      for i, (port, cport) in enumerate(ports)}

    def _quorum(self, controllers: list[tuple[int, int]]) -> Quorum:
        path = self.data_dir / "quorum.json"
        if path.is_file():
            data = json.loads(path.read_text())
            quorum = Quorum(data["cluster_id"], tuple(tuple(c) for c in data["controllers"]))
            if [(n, p) for n, p, _ in quorum.controllers] == controllers:
                return quorum
            raise BrokerError(f"{path} names other controllers ({quorum.initial_controllers}) than asked "
                              f"({controllers}): a formatted cluster keeps its ports; use another data dir")
        quorum = Quorum.new(controllers)
        path.write_text(json.dumps({"cluster_id": quorum.cluster_id, "controllers": quorum.controllers}) + "\n")
        return quorum

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes.values())

    def start(self, timeout: float = 120) -> LocalCluster:
        """Every node launched, then each waited for: a node answers only once a majority of the
        controllers run; then until every broker is registered."""
        try:
            # formatted and launched side by side: each format is a JVM of its own
            with ThreadPoolExecutor(len(self.nodes)) as pool:
                for done in [pool.submit(node.start, timeout, wait=False) for node in self.nodes.values()]:
                    done.result()
            for node in self.nodes.values():
                node.wait_ready(timeout)
            self.wait_brokers(len(self.nodes), timeout)
        except BaseException:
            # the nodes that did start would run on with nobody to stop them (a caller's `with` or
            # stack.stop() never sees a cluster whose start raised): seen after a port was taken
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Every node at once: one by one, the last ones wait for a quorum that has gone."""
        threads = [threading.Thread(target=node.stop) for node in self.nodes.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def kill(self, node_id: int) -> None:
        """SIGKILL one node: what a crash of its machine looks like."""
        self.nodes[node_id].kill()

    def restart(self, node_id: int, timeout: float = 90) -> None:
        self.nodes[node_id].start(timeout)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- what the cluster says of itself ------------------------------------------------------------

    def _admin(self) -> KafkaAdminClient:
        alive = [n.bootstrap for n in self.nodes.values() if n.is_running()]
        return KafkaAdminClient(bootstrap_servers=alive or self.bootstrap, client_id="yingji-cluster-probe",
                                request_timeout_ms=5000)

    def brokers(self) -> set[int]:
        admin = self._admin()
        try:
            return {b.get("broker_id", b.get("node_id")) for b in admin.describe_cluster().get("brokers", [])}
        finally:
            admin.close()

    def wait_brokers(self, count: int, timeout: float = 60) -> None:
        Retrying(retry=retry_if_exception_type(KafkaError) | retry_if_result(lambda ok: not ok),
                 wait=wait_fixed(0.3), stop=stop_after_delay(timeout), reraise=True,
                 retry_error_callback=lambda _s: (_ for _ in ()).throw(
                     BrokerError(f"fewer than {count} brokers registered after {timeout:.0f}s")))(
            lambda: len(self.brokers()) >= count)

    def partitions(self, topics: list[str]) -> dict[tuple[str, int], dict]:
        """(topic, partition) -> {"leader", "replicas", "isr"} as the cluster answers now."""
        admin = self._admin()
        try:
            out = {}
            for t in admin.describe_topics(topics):
                for p in t["partitions"]:
                    out[(t.get("topic", t.get("name")), p["partition_index"])] = {
                        "leader": p["leader_id"], "replicas": list(p["replica_nodes"]), "isr": list(p["isr_nodes"])}
            return out
        finally:
            admin.close()

    def leader_of(self, topic: str, partition: int) -> int:
        return self.partitions([topic])[(topic, partition)]["leader"]

    def active_controller(self, timeout: float = 60) -> int:
        """The node whose controller leads the metadata quorum now, as Kafka's own tool says it
        (`kafka-metadata-quorum.sh describe --status`: its `LeaderId:` line), asked of a running node."""
        alive = next((n for n in self.nodes.values() if n.is_running()), None)
        if alive is None:
            raise BrokerError("no node of the cluster is running")
        # a short-lived JVM: small heap, the client compiler only (it starts faster on busy cores)
        cmd = [_java(), "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
               f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}", "-cp", f"{LIB_DIR}/*:{ensure_tools()}/*",
               "org.apache.kafka.tools.MetadataQuorumCommand", "--bootstrap-server", alive.bootstrap,
               "describe", "--status"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(f"kafka-metadata-quorum took over {timeout:.0f}s") from exc
        found = re.search(r"^LeaderId:\s*(-?\d+)", proc.stdout, re.MULTILINE)
        if proc.returncode != 0 or found is None or int(found.group(1)) < 0:
            raise BrokerError(f"kafka-metadata-quorum describe --status exited {proc.returncode} with no leader:\n"
                              f"{(proc.stdout + proc.stderr)[-2000:]}")
        return int(found.group(1))

    def wait_isr(self, topics: list[str], size: int = NODES, timeout: float = 120) -> float:
        """Seconds until every partition of the topics has `size` replicas in sync again."""
        t0 = time.monotonic()

        def full() -> bool:
            parts = self.partitions(topics)
            return bool(parts) and all(len(p["isr"]) >= size and p["leader"] >= 0 for p in parts.values())

        ok = Retrying(retry=retry_if_exception_type(KafkaError) | retry_if_result(lambda ok: not ok),
                      wait=wait_fixed(0.5), stop=stop_after_delay(timeout),
                      retry_error_callback=lambda _s: False)(full)
        if not ok:
            raise BrokerError(f"the ISR of {topics} was not back to {size} within {timeout:.0f}s: {self.partitions(topics)}")
        return time.monotonic() - t0
