"""Local Apache Kafka (KRaft, one combined broker+controller node) run from Maven's jars.

The service, its tests and `make run` use the same Apache Kafka as production: durable on disk,
real consumer groups and compaction. The jars come from `deploy/kafka/pom.xml` through Maven
(cached in ~/.m2) into `<repo>/.kafka/lib`; the broker is started as Kafka's `bin/` scripts do,
without the scripts.

    with LocalKafka(Path("/tmp/kafka"), port=9092) as kafka:
        use(kafka.bootstrap)

    python -m services.local.kafka --data-dir /tmp/kafka --port 9092
"""

from __future__ import annotations

import argparse
import atexit
import base64
import errno
import hashlib
import logging
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tenacity import RetryCallState, Retrying, retry_if_exception_type, retry_if_result, stop_after_delay, wait_fixed

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]  # services/local/kafka.py -> the repository
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
LOG4J2_CONFIG = REPO_ROOT / "deploy" / "kafka" / "log4j2.yaml"
LIB_DIR = REPO_ROOT / ".kafka" / "lib"
# Kafka's command-line tools (kafka-tools: kafka-metadata-quorum and the like), one jar run on LIB_DIR's
TOOLS_POM = REPO_ROOT / "deploy" / "kafka" / "tools" / "pom.xml"
TOOLS_DIR = REPO_ROOT / ".kafka" / "tools"
_BROKER_JARS = ("kafka_2.13-*.jar", "log4j-core-*.jar")
_TOOLS_JARS = ("kafka-tools-*.jar",)
# Records which pom the jars came from, so a version bump in the pom refetches them.
_STAMP = ".pom-sha256"
# The classes a broker loads, dumped once by a broker's clean exit (AppCDS, JDK 13+; `make kafka-jars`
# makes it): every JVM started on LIB_DIR maps them instead of reading and verifying some 4,000 classes
# out of the jars. Measured on two cores: a node ready in 2.5 s on 1.9 s of CPU with it and C1 only, 7.8 s
# on 5.8 s without either (services/local/kafka.py's start). A JVM whose archive does not match its JDK or
# class path ignores it and starts as before.
CLASS_ARCHIVE = REPO_ROOT / ".kafka" / "kafka-classes.jsa"
# Extra JVM options for every node (shell words): `make test` sets -XX:TieredStopAtLevel=1 (C1 only: its
# nodes live minutes, JIT work outweighs what C2 would win); benches and `make run` leave it empty.
JVM_OPTS_ENV = "YINGJI_KAFKA_JVM_OPTS"


# Brokers started by this process; atexit ends them so a forgotten stop() leaves no JVM behind.
_RUNNING: weakref.WeakSet[LocalKafka] = weakref.WeakSet()


def _stop_all_at_exit() -> None:
    for broker in list(_RUNNING):
        try:
            broker.stop(timeout=10)
        except Exception:  # noqa: BLE001 - interpreter is exiting; best effort
            pass


atexit.register(_stop_all_at_exit)


class BrokerError(RuntimeError):
    """The local broker could not be fetched, formatted, started or stopped."""


class PortInUseError(BrokerError):
    """A port the broker needs is held by a process that is not this data dir's broker."""


# ---------------------------------------------------------------------------------------------
# jars


def _pom_digest(pom: Path = POM) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def _jars_present(lib: Path, pom: Path = POM, jars: tuple[str, ...] = _BROKER_JARS) -> bool:
    stamp = lib / _STAMP
    return (
        stamp.is_file()
        and stamp.read_text().strip() == _pom_digest(pom)
        and all(any(lib.glob(pattern)) for pattern in jars)
    )


def ensure_tools(timeout: float = 900) -> Path:
    """Kafka's command-line tools (deploy/kafka/tools/pom.xml) in TOOLS_DIR, beside the broker's jars."""
    ensure_jars()
    return ensure_jars(TOOLS_DIR, timeout, pom=TOOLS_POM, jars=_TOOLS_JARS)


def ensure_jars(lib: Path = LIB_DIR, timeout: float = 900, *, pom: Path = POM,
                jars: tuple[str, ...] = _BROKER_JARS) -> Path:
    """Make sure `lib` holds the broker's jars (Maven copy-dependencies of the pom); return it.
    `pom` and `jars` (what must be there after): another set of jars, Kafka's tools.

    Copies into a temporary sibling first and renames, so an interrupted fetch never leaves a
    half-filled lib dir that looks complete.
    """
    if _jars_present(lib, pom, jars):
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("cannot fetch the Kafka jars: `mvn` (Apache Maven) is not on PATH")
    if not pom.is_file():
        raise BrokerError(f"cannot fetch the Kafka jars: {pom} is missing")
    lib.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".lib-", dir=lib.parent))
    cmd = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
           f"-DoutputDirectory={staging}"]
    try:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(f"cannot fetch the Kafka jars: `{' '.join(cmd)}` took over "
                              f"{timeout:.0f}s") from exc
        if proc.returncode != 0:
            out = _tail_text(proc.stdout + proc.stderr, 40)
            raise BrokerError(f"cannot fetch the Kafka jars: `{' '.join(cmd)}` exited "
                              f"{proc.returncode}:\n{out}")
        if not all(any(staging.glob(pattern)) for pattern in jars):
            raise BrokerError(f"cannot fetch the Kafka jars: mvn succeeded but left no "
                              f"{' or '.join(jars)} in {staging}")
        (staging / _STAMP).write_text(_pom_digest(pom) + "\n")
        if lib.exists():
            shutil.rmtree(lib, ignore_errors=True)
        try:
            staging.rename(lib)
        except OSError:
            # Another process fetched at the same time and renamed first: its copy will do.
            if not _jars_present(lib, pom, jars):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return lib


# ---------------------------------------------------------------------------------------------
# small helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_run(count: int) -> int:
    """The first of `count` consecutive ports on 127.0.0.1 that were free a moment ago, below the
    kernel's range for outgoing connections: a port from that range (free_port's) can be taken by any
    client's socket between the choice and the bind, which once left a bench worker without its
    metrics port (worker i listens on the first + i)."""
    low = 20000
    try:
        low = max(1024, int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]) - 12000)
    except (OSError, ValueError, IndexError):
        pass
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(low, low + 10000)
        if all(port_is_free(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports on 127.0.0.1")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR as the JVM uses it, so sockets of a broker just stopped are not "in use".
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
        return True


def _port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail_text(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _tail_file(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            return _tail_text(f.read().decode("utf-8", "replace"), lines)
    except OSError:
        return f"(no log at {path})"


def _new_cluster_id() -> str:
    # Kafka's Uuid.toString: url-safe base64 of 16 random bytes, no padding; Kafka itself never
    # hands out one starting with "-" because command lines would read it as an option.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise BrokerError("cannot start Kafka: no `java` on PATH (Kafka 4.x needs Java 17+)")
    return java


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it holds no port and no lock, so count it as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------------------------------------
# the broker


@dataclass(frozen=True)
class Quorum:
    """The controllers of a cluster of several combined nodes (KIP-853's dynamic quorum): every node is
    formatted with the same cluster id and the same initial controllers, each with its own directory id."""

    cluster_id: str
    controllers: tuple[tuple[int, int, str], ...]  # (node id, controller port, metadata directory id)

    @classmethod
    def new(cls, controllers: list[tuple[int, int]]) -> Quorum:
        return cls(_new_cluster_id(), tuple((node, port, _new_cluster_id()) for node, port in controllers))

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for _, port, _ in self.controllers)

    @property
    def initial_controllers(self) -> str:
        return ",".join(f"{node}@127.0.0.1:{port}:{dir_id}" for node, port, dir_id in self.controllers)

    @property
    def size(self) -> int:
        return len(self.controllers)


class LocalKafka:
    """One Apache Kafka node (process.roles=broker,controller) on loopback, data in data_dir: alone
    (quorum None: its own controller, every replication factor 1) or one of a quorum's nodes
    (services.local.cluster: replication factor 3, min.insync.replicas 2)."""

    def __init__(self, data_dir: Path, port: int = 9092, controller_port: int = 9093,
                 heap: str = "512m", *, node_id: int = 1, quorum: Quorum | None = None) -> None:
        if port == controller_port:
            raise ValueError("port and controller_port must differ")
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.node_id = node_id
        self.quorum = quorum
        self.log_dirs = self.data_dir / "kafka-logs"
        self.properties_file = self.data_dir / "server.properties"
        self.cluster_id_file = self.data_dir / "cluster-id"
        self.log_file = self.data_dir / "broker.log"
        self.pid_file = self.data_dir / "broker.pid"
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.archive_to: Path | None = None  # make_class_archive's: where the JVM writes its classes at exit

    # -- public --------------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 60, *, wait: bool = True) -> LocalKafka:
        """Fetch jars if needed, format once, start the JVM and wait until it answers metadata (a node
        of a quorum cannot before a majority of its controllers run: LocalCluster starts them all, then
        waits with wait_ready)."""
        with self._lock:
            if self.is_running():
                return self
            lib = ensure_jars()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._reclaim_leftover()
            for p in (self.port, self.controller_port):
                if not port_is_free(p):
                    raise PortInUseError(
                        f"cannot start Kafka: 127.0.0.1:{p} is already in use by another "
                        f"process (not the broker of {self.data_dir}); pick other ports or "
                        f"stop it")
            self._write_properties()
            self._format_once(lib)
            self._launch(lib)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 20) -> None:
        """Clean shutdown (SIGTERM: Kafka flushes and closes its logs); SIGKILL after timeout."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            if proc.poll() is None:
                self._signal(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("Kafka pid %d ignored SIGTERM for %.0fs; killing it",
                                proc.pid, timeout)
            self._reap(proc)

    def kill(self) -> None:
        """SIGKILL the broker, no shutdown at all (what a crash or an OOM kill looks like)."""
        with self._lock:
            if self._proc is not None:
                self._reap(self._proc)

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        return _tail_file(self.log_file, lines)

    # -- steps ---------------------------------------------------------------------------------

    def _properties(self) -> dict[str, str]:
        q = self.quorum
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.bootstrap.servers": q.bootstrap_servers if q else f"127.0.0.1:{self.controller_port}",
            "listeners": (f"PLAINTEXT://127.0.0.1:{self.port},"
                          f"CONTROLLER://127.0.0.1:{self.controller_port}"),
            "advertised.listeners": (f"PLAINTEXT://127.0.0.1:{self.port},"
                                     f"CONTROLLER://127.0.0.1:{self.controller_port}"),
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.log_dirs),
            "num.partitions": "1",
            # Topics are created on purpose (the catalog), never by a typo in a producer.
            "auto.create.topics.enable": "false",
            # One node: every internal topic can only have one replica.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "min.insync.replicas": "1",
            "default.replication.factor": "1",
            # Otherwise every consumer group's first join waits 3 s for more members.
            "group.initial.rebalance.delay.ms": "0",
            # After a SIGKILL the restarted controller refuses the broker's new registration
            # (DUPLICATE_BROKER_REGISTRATION) until the old one's session expires: 9 s by
            # default. Kept at the default: at 4 s a CPU-starved node fenced itself under load
            # (NotLeaderForPartition, then a Faust worker stuck after the rebalance).
            "broker.heartbeat.interval.ms": "1000",
            "broker.session.timeout.ms": "9000",
        }
        if q is not None and q.size >= 3:
            # Three nodes: every record on three, acknowledged by two (acks=all), so one node can die
            # with nothing acknowledged lost and writes going on; a replica that fell behind is never
            # made leader (it would drop what the others acknowledged).
            props |= {
                "offsets.topic.replication.factor": "3",
                "transaction.state.log.replication.factor": "3",
                "transaction.state.log.min.isr": "2",
                "share.coordinator.state.topic.replication.factor": "3",
                "share.coordinator.state.topic.min.isr": "2",
                "default.replication.factor": "3",
                "min.insync.replicas": "2",
                "unclean.leader.election.enable": "false",
                # Three JVMs on two cores beside the workers and the API: few threads each
                # (defaults 3 network, 8 io, 10 background).
                "num.network.threads": "2",
                "num.io.threads": "2",
                "background.threads": "2",
                "num.replica.fetchers": "1",
                "log.cleaner.threads": "1",
            }
        return props

    def _write_properties(self) -> None:
        body = "".join(f"{k}={v}\n" for k, v in self._properties().items())
        tmp = self.properties_file.with_suffix(".tmp")
        tmp.write_text("# written by services/local/kafka.py on every start; edits are lost\n" + body)
        tmp.replace(self.properties_file)

    def _cluster_id(self) -> str:
        if self.quorum is not None:
            return self.quorum.cluster_id
        # Kept beside the data so a re-format (after a lost meta.properties) keeps the same id.
        if self.cluster_id_file.is_file():
            cid = self.cluster_id_file.read_text().strip()
            if cid:
                return cid
        cid = _new_cluster_id()
        self.cluster_id_file.write_text(cid + "\n")
        return cid

    def _jvm_base(self, lib: Path, heap: str) -> list[str]:
        return [
            _java(), f"-Xmx{heap}", f"-Xms{heap}", *jvm_extra_options(),
            # Kafka's own defaults from kafka-run-class.sh.
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp", f"{lib}/*",
        ]

    def _format_once(self, lib: Path) -> None:
        if (self.log_dirs / "meta.properties").is_file():
            return
        quorum = ["--standalone"] if self.quorum is None else ["--initial-controllers", self.quorum.initial_controllers]
        cmd = self._jvm_base(lib, "256m") + [
            "kafka.tools.StorageTool", "format", *quorum,
            "-t", self._cluster_id(), "-c", str(self.properties_file)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired as exc:
            raise BrokerError("Kafka StorageTool format took over 120s") from exc
        if proc.returncode != 0:
            raise BrokerError(
                f"Kafka StorageTool format of {self.log_dirs} exited {proc.returncode}:\n"
                f"{_tail_text(proc.stdout + proc.stderr, 40)}")

    def _launch(self, lib: Path) -> None:
        # the class archive is dumped by the broker's JVM only (not StorageTool's), as it exits cleanly
        dump = [f"-XX:ArchiveClassesAtExit={self.archive_to}"] if self.archive_to is not None else []
        cmd = self._jvm_base(lib, self.heap) + dump + ["kafka.Kafka", str(self.properties_file)]
        with self.log_file.open("ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting Kafka on "
                      f"{self.bootstrap}\n".encode())
            out.flush()
            # Own session/process group: Ctrl-C in a terminal reaches us, not the JVM, so
            # shutdown stays ordered; and stop() can signal the whole group.
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.data_dir, start_new_session=True)
        self.pid_file.write_text(f"{self._proc.pid}\n")
        _RUNNING.add(self)

    def _wait_ready(self, timeout: float) -> None:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        deadline = time.monotonic() + timeout

        def serving() -> bool:
            proc = self._proc
            if proc is None or proc.poll() is not None:  # not retried: the broker is gone
                code = proc.returncode if proc is not None else None
                raise BrokerError(f"Kafka exited with code {code} while starting; "
                                  f"tail of {self.log_file}:\n{self.log_tail()}")
            # Cheap TCP probe first, so kafka-python does not log a refused connection per try.
            if not _port_accepts(self.port):
                return False
            remaining_ms = max(1000, int((deadline - time.monotonic()) * 1000))
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="yingji-broker-probe",
                                     request_timeout_ms=min(5000, remaining_ms),
                                     bootstrap_timeout_ms=min(5000, remaining_ms))
            try:
                # Metadata answered with our node in it: the broker is unfenced and serving.
                admin.list_topics()
                return bool(admin.describe_cluster().get("brokers"))
            finally:
                admin.close()

        def gave_up(state: RetryCallState) -> None:
            last = state.outcome.exception() if state.outcome is not None else None
            raise BrokerError(f"Kafka did not answer on {self.bootstrap} within {timeout:.0f}s "
                              f"(last error: {last!r}); tail of {self.log_file}:\n{self.log_tail()}")

        Retrying(retry=retry_if_exception_type((KafkaError, OSError)) | retry_if_result(lambda ok: not ok),
                 wait=wait_fixed(0.15), stop=stop_after_delay(timeout), retry_error_callback=gave_up)(serving)

    def _reclaim_leftover(self) -> None:
        # A broker of this data dir left behind by a crashed parent holds our ports and the log
        # dir lock; it is ours, so end it rather than fail.
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        if not _pid_alive(pid) or str(self.properties_file) not in _cmdline(pid):
            self.pid_file.unlink(missing_ok=True)
            return
        log.warning("ending leftover Kafka pid %d of %s", pid, self.data_dir)
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 20
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            while _pid_alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)

    def _signal(self, proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        try:
            os.killpg(proc.pid, sig)  # the group: nothing the JVM forked can linger
        except ProcessLookupError:
            pass
        except PermissionError:
            proc.send_signal(sig)

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        # SIGKILL the whole group (a no-op when it already exited), then wait, so no java
        # process or zombie remains and the ports and the log-dir lock are free on return.
        self._signal(proc, signal.SIGKILL)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(f"Kafka pid {proc.pid} survived SIGKILL") from exc
        self._proc = None
        self.pid_file.unlink(missing_ok=True)
        _RUNNING.discard(self)


# ---------------------------------------------------------------------------------------------
# python -m services.local.kafka


def jvm_extra_options() -> list[str]:
    """The class archive when there is one, and YINGJI_KAFKA_JVM_OPTS."""
    opts = [f"-XX:SharedArchiveFile={CLASS_ARCHIVE}"] if CLASS_ARCHIVE.is_file() else []
    return opts + shlex.split(os.environ.get(JVM_OPTS_ENV, ""))


def make_class_archive(archive: Path = CLASS_ARCHIVE, timeout: float = 120) -> Path:
    """A node started with -XX:ArchiveClassesAtExit, a topic written and read (the classes of the request
    path loaded too), then stopped cleanly: the JVM writes the archive as it exits."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    tmp = archive.with_name(archive.name + f".{os.getpid()}.tmp")
    try:
        with tempfile.TemporaryDirectory(prefix="yingji-cds-") as d:
            node = LocalKafka(Path(d), port=free_port(), controller_port=free_port(), heap="256m")
            node.archive_to = tmp
            if CLASS_ARCHIVE.is_file() and archive == CLASS_ARCHIVE:
                CLASS_ARCHIVE.unlink()  # not one archive over another: a dynamic archive is made on the base one
            node.start(timeout=timeout)
            try:
                admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
                admin.create_topics([NewTopic("cds", num_partitions=2, replication_factor=1)])
                admin.close()
                producer = KafkaProducer(bootstrap_servers=node.bootstrap, acks="all")
                for i in range(20):
                    producer.send("cds", key=str(i).encode(), value=b"x")
                producer.flush()
                producer.close()
                consumer = KafkaConsumer("cds", bootstrap_servers=node.bootstrap, group_id="cds",
                                         auto_offset_reset="earliest", consumer_timeout_ms=10_000)
                sum(1 for _ in consumer)
                consumer.close()
            finally:
                node.stop()
        if not tmp.is_file():  # a JVM killed after stop's wait writes none: nothing half made is kept
            raise BrokerError(f"the JVM wrote no class archive at {tmp}: see its log")
        tmp.replace(archive)
        return archive
    finally:
        tmp.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.local.kafka",
        description="Run a local Apache Kafka node (KRaft) in the foreground until Ctrl-C.")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--port", type=int, default=9092)
    parser.add_argument("--controller-port", type=int, default=9093)
    parser.add_argument("--heap", default="512m")
    parser.add_argument("--timeout", type=float, default=90)
    parser.add_argument("--make-class-archive", action="store_true",
                        help=f"write {CLASS_ARCHIVE.relative_to(REPO_ROOT)} (a node started and stopped once) and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.make_class_archive:
        logging.getLogger("kafka").setLevel(logging.ERROR)  # the client's coordinator chatter while a group forms
        print(f"class archive written: {make_class_archive()}", flush=True)
        return 0
    if args.data_dir is None:
        parser.error("--data-dir is required")

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    kafka = LocalKafka(args.data_dir, port=args.port, controller_port=args.controller_port,
                       heap=args.heap)
    try:
        kafka.start(timeout=args.timeout)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Kafka ready on {kafka.bootstrap} (data in {kafka.data_dir}, log {kafka.log_file});"
          f" Ctrl-C stops it", flush=True)
    try:
        while not stop.wait(0.5):
            if not kafka.is_running():
                print(f"error: Kafka exited; tail of {kafka.log_file}:\n{kafka.log_tail()}",
                      file=sys.stderr)
                return 1
    finally:
        kafka.stop()
    print("Kafka stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
