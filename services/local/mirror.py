"""MirrorMaker 2 from the command center's cluster to the standby site's (deploy/STANDBY.md), run from Maven's
jars (deploy/kafka/mirror/pom.xml) in dedicated mode, as Kafka's bin/connect-mirror-maker.sh does, without
the script.

    mirror = LocalMirror(Path("/tmp/mm2"), primary="127.0.0.1:9092", standby="127.0.0.1:19092",
                         groups=["yingji", "yingji-delivery"], changelogs=["yingji-incidents-changelog"])
    mirror.start(); mirror.wait_mirrored(["yingji.incidents.reported", ...]); ...; mirror.stop()

`mm2_properties` is the configuration, a pure function of the two clusters and the names: the local drill
and deploy/kafka/mirror/mm2.properties (production) say the same (a test compares them).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import KafkaError
from tenacity import Retrying, retry_if_exception_type, retry_if_result, stop_after_delay, wait_fixed

from services.local.kafka import REPO_ROOT, BrokerError, _java, _tail_file, ensure_jars

MIRROR_POM = REPO_ROOT / "deploy" / "kafka" / "mirror" / "pom.xml"
MIRROR_DIR = REPO_ROOT / ".kafka" / "mirror"
MIRROR_LOG4J2 = REPO_ROOT / "deploy" / "kafka" / "mirror" / "log4j2.xml"
_MIRROR_JARS = ("connect-mirror-4*.jar", "connect-runtime-*.jar", "log4j-core-*.jar")
SOURCE, TARGET = "primary", "standby"  # the cluster aliases in mm2.properties
FLOW = f"{SOURCE}->{TARGET}"
# Our choice: how often MM2 looks for new topics and groups, emits checkpoints and writes translated
# offsets into the standby's groups. Kafka's defaults (60 s to 10 min) would leave a standby worker
# starting from offsets minutes old; 5 s costs a few admin requests a second on the two clusters.
SYNC_INTERVAL_S = 5


def ensure_mirror(timeout: float = 900) -> Path:
    """MirrorMaker 2's jars (deploy/kafka/mirror/pom.xml) in .kafka/mirror: a class path of their own."""
    return ensure_jars(MIRROR_DIR, timeout, pom=MIRROR_POM, jars=_MIRROR_JARS)


def topics_regex(changelogs: list[str]) -> str:
    """The topics mirrored: every catalog topic (yingji.*) and the workers' table changelogs."""
    return "|".join([r"yingji\..*", *(re.escape(c) for c in changelogs)])


def mm2_properties(*, primary: str, standby: str, groups: list[str], changelogs: list[str],
                   replication: int = 1, tasks: int = 2, sync_interval_s: int = SYNC_INTERVAL_S) -> dict[str, str]:
    """mm2.properties for one flow, primary -> standby, run at the standby site (it reads across the WAN
    and writes locally: a WAN cut leaves it nothing half-written on its own side)."""
    every = str(sync_interval_s)
    return {
        "clusters": f"{SOURCE}, {TARGET}",
        f"{SOURCE}.bootstrap.servers": primary,
        f"{TARGET}.bootstrap.servers": standby,
        f"{FLOW}.enabled": "true",
        f"{TARGET}->{SOURCE}.enabled": "false",  # one direction: failing back is a flow of its own, set up then
        # Topic names unchanged on the standby (not "primary.yingji..."): the services start there with
        # their own settings and catalog, nothing renamed. The price: MM2 cannot tell its own records from
        # others' on a name, so only one direction may run at a time (deploy/STANDBY.md, failing back).
        "replication.policy.class": "org.apache.kafka.connect.mirror.IdentityReplicationPolicy",
        f"{FLOW}.topics": topics_regex(changelogs),
        f"{FLOW}.groups": "|".join(re.escape(g) for g in groups),
        "refresh.topics.interval.seconds": every,
        "refresh.groups.interval.seconds": every,
        # the groups' committed offsets translated into the standby's offsets and written into the standby's
        # groups (only while those groups have no member there: the standby's services are stopped)
        "emit.checkpoints.enabled": "true",
        "emit.checkpoints.interval.seconds": every,
        "sync.group.offsets.enabled": "true",
        "sync.group.offsets.interval.seconds": every,
        "emit.heartbeats.enabled": "true",
        "emit.heartbeats.interval.seconds": every,
        # the offset syncs (what translates an offset) kept at the standby, so nothing MM2 needs after a
        # cut lives on the site that is gone
        "offset-syncs.topic.location": "target",
        # an offset sync at least every 10 records: the translated offsets lag the committed ones by at most
        # that (Kafka's default 100). Our choice: a standby worker re-reads a few records, which it decides once.
        "offset.lag.max": "10",
        # its connectors are on the class path (ServiceLoader manifests): not scanning every jar saves ~10 s of
        # a start on two busy cores
        "plugin.discovery": "service_load",  # MirrorMaker's own scan
        f"{TARGET}.plugin.discovery": "service_load",  # the flow's Connect worker's (its settings: the target's)
        "sync.topic.configs.enabled": "true",  # cleanup.policy=compact of the changelogs, the retentions
        "sync.topic.acls.enabled": "false",  # no ACLs here (PLAINTEXT listeners: deploy/README.md)
        "tasks.max": str(tasks),
        "replication.factor": str(replication),
        "checkpoints.topic.replication.factor": str(replication),
        "heartbeats.topic.replication.factor": str(replication),
        "offset-syncs.topic.replication.factor": str(replication),
        "offset.storage.replication.factor": str(replication),
        "config.storage.replication.factor": str(replication),
        "status.storage.replication.factor": str(replication),
        # the records as the primary has them: every acknowledged record mirrored with acks=all
        f"{TARGET}.producer.acks": "all",
        f"{TARGET}.producer.enable.idempotence": "true",
        f"{SOURCE}.consumer.auto.offset.reset": "earliest",
    }


def render(props: dict[str, str]) -> str:
    """A .properties text: a backslash doubled (Java's Properties would read `yingji\\.` as `yingji.`)."""
    return "".join(f"{k} = {_escape(v)}\n" for k, v in props.items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\")


def parse(text: str) -> dict[str, str]:
    """A .properties file as written by `render` and as deploy/kafka/mirror/mm2.properties is (key = value,
    # comments)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip().replace("\\\\", "\\")
    return out


class LocalMirror:
    """MirrorMaker 2 as one JVM (dedicated mode, `--clusters standby`: only the flow into the standby),
    its properties and log under data_dir."""

    def __init__(self, data_dir: Path, *, primary: str, standby: str, groups: list[str], changelogs: list[str],
                 replication: int = 1, heap: str = "256m") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.props = mm2_properties(primary=primary, standby=standby, groups=groups, changelogs=changelogs,
                                    replication=replication)
        self.standby = standby
        self.heap = heap
        self.properties_file = self.data_dir / "mm2.properties"
        self.log_file = self.data_dir / "mirror.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> LocalMirror:
        with self._lock:
            if self.is_running():
                return self
            lib = ensure_mirror()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.properties_file.write_text("# written by services/local/mirror.py on every start\n"
                                            + render(self.props))
            # the client compiler only: MM2 starts in about half the CPU time on two busy cores (as the cluster's
            # quorum tool does), and a district's few hundred records a second need no more
            cmd = [_java(), f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                   "-Djava.awt.headless=true",
                   f"-Dlog4j2.configurationFile={MIRROR_LOG4J2}", "-cp", f"{lib}/*",
                   "org.apache.kafka.connect.mirror.MirrorMaker", str(self.properties_file), "--clusters", TARGET]
            with self.log_file.open("ab") as out:
                # own session: stop() and kill() signal its group, Ctrl-C in a terminal reaches the parent only
                self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                              cwd=self.data_dir, start_new_session=True)
        return self

    def wait_mirrored(self, topics: list[str], timeout: float = 120) -> float:
        """Seconds until every topic named exists on the standby with MM2's heartbeats beside them (the
        source connector has created the remote topics and runs). BrokerError if MM2 exits or time runs out."""
        t0 = time.monotonic()
        wanted = set(topics) | {"heartbeats"}
        missing: set[str] = set(wanted)

        def there() -> bool:
            if not self.is_running():
                raise BrokerError(f"MirrorMaker 2 exited; tail of {self.log_file}:\n{_tail_file(self.log_file, 40)}")
            admin = KafkaAdminClient(bootstrap_servers=self.standby, client_id="yingji-mirror-probe",
                                     request_timeout_ms=5000)
            try:
                missing.clear()
                missing.update(wanted - set(admin.list_topics()))
                return not missing
            finally:
                admin.close()

        ok = Retrying(retry=retry_if_exception_type(KafkaError) | retry_if_result(lambda ok: not ok),
                      wait=wait_fixed(0.5), stop=stop_after_delay(timeout), retry_error_callback=lambda _s: False)(there)
        if not ok:
            raise BrokerError(f"MirrorMaker 2 had not created {sorted(missing)} on the standby within {timeout:.0f}s; "
                              f"tail of {self.log_file}:\n{_tail_file(self.log_file, 40)}")
        return time.monotonic() - t0

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (its connectors commit their offsets), SIGKILL after timeout."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout)
                except ProcessLookupError:
                    pass
                except subprocess.TimeoutExpired:
                    pass
            self._reap(proc)

    def pause(self) -> None:
        """SIGSTOP: MM2 frozen as a stalled WAN would leave it (the drill's short variant, so a cut loses reports)."""
        if self.is_running():
            os.killpg(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.is_running():
            os.killpg(self._proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        with self._lock:
            if self._proc is not None:
                self._reap(self._proc)

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)
        self._proc = None

    def log_tail(self, lines: int = 40) -> str:
        return _tail_file(self.log_file, lines)
