"""deploy/: the files people deploy yingji with beyond one machine (issue 22), each checked here offline by
the tool that reads it, and checked to fail on a real mistake:

- systemd units (deploy/systemd/): `systemd-analyze verify` in a temporary root holding the machine's own
  units and stand-ins for the programs the units start, at the paths deploy/README.md installs them to;
  any complaint fails (verify exits 0 on a bad value it ignores). `systemd-analyze security` keeps the
  hardening. The Kafka nodes' properties pass Kafka's own StorageTool (the jars of deploy/kafka/pom.xml).
- the compose file: the Compose Specification's JSON Schema (as check-jsonschema ships it), plus what a
  schema cannot see (three nodes of one cluster, static member ids, the haproxy servers).
- the Kubernetes manifests: `kubectl kustomize` renders the production overlay; every object passes the
  Kubernetes schemas of kubernetes-validate (strict: an unknown field is an error), plus the probes, the
  static member ids, the PodDisruptionBudget and no committed secret.
- haproxy.cfg: `haproxy -c`, warnings fatal.
- every YINGJI_* these files set is a setting of services/settings.py or a channel's secret.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest
import yaml

from services.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
DOCKERFILE = DEPLOY / "compose" / "Dockerfile"
HAPROXY = DEPLOY / "haproxy" / "haproxy.cfg"
K8S_PRODUCTION = DEPLOY / "k8s" / "overlays" / "production"
KAFKA_LIB = ROOT / ".kafka" / "lib"

# The Kubernetes release the manifests are checked against: one kubernetes-validate ships, the release of
# the kubectl here (1.32).
KUBERNETES_VERSION = "1.32.0"

# Where deploy/README.md installs what the units start; verify checks each ExecStart*= program exists.
INSTALLED_PROGRAMS = (
    "/opt/yingji/venv/bin/yingji",
    "/opt/yingji/venv/bin/uvicorn",
    "/opt/kafka/bin/kafka-server-start.sh",
    "/opt/kafka/bin/kafka-storage.sh",
    "/usr/sbin/haproxy",
    "/bin/sh",
)
UNITS = ("yingji-kafka@.service", "yingji-worker@.service", "yingji-api@.service", "yingji-delivery.service",
         "yingji-topics.service")
# the units as they are started: templates with an instance
INSTANCES = ("yingji-kafka@1.service", "yingji-worker@0.service", "yingji-api@8081.service",
             "yingji-delivery.service", "yingji-topics.service")
# `systemd-analyze security`'s exposure, 0-100 (its 0.0-10.0 times ten): the units score 17 with their
# hardening; without it, 90 and more
EXPOSURE_THRESHOLD = 25


def tool(name: str, package: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        pytest.fail(f"{name} is not on PATH: run `make test`, which installs Debian's {package} package")
    return exe


def settings_variables() -> set[str]:
    return {f"YINGJI_{name.upper()}" for name in Settings.model_fields}


def channel_variables() -> set[str]:
    """The channels' secrets by the names playbooks/data/channels.yaml gives them (and their NAME_FILE)."""
    channels = yaml.safe_load((ROOT / "playbooks" / "data" / "channels.yaml").read_text(encoding="utf-8"))
    names = set()
    for channel in channels["channels"]:
        for holder in (channel, channel.get("smtp") or {}):
            names |= {v for k, v in holder.items() if k.endswith("_env") and v}
    return names | {f"{n}_FILE" for n in names}


def unknown_yingji_variables(names) -> set[str]:
    return {n for n in names if n.startswith("YINGJI_")} - settings_variables() - channel_variables()


# --- systemd --------------------------------------------------------------------------------


def unit_entries(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of each assignment, in order; a key may repeat (Environment=, LoadCredential=)."""
    entries, section = [], ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


def unit_values(text: str, key: str) -> list[str]:
    return [v for _, k, v in unit_entries(text) if k == key]


def unit_environment(text: str) -> dict[str, str]:
    env = {}
    for value in unit_values(text, "Environment"):
        for item in re.findall(r'"[^"]*"|\S+', value):
            name, _, val = item.strip('"').partition("=")
            env[name] = val
    return env


def systemd_root(tmp_path: Path, units: dict[str, str]) -> Path:
    """A root for `systemd-analyze --root`: the machine's own units (sysinit.target and the rest the
    units' default dependencies need), ours in /etc/systemd/system, and an executable stand-in at each
    path of INSTALLED_PROGRAMS."""
    root = tmp_path / "root"
    system = next(p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir())
    shutil.copytree(system, root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    etc = root / "etc" / "systemd" / "system"
    for name, text in units.items():
        (etc / name).parent.mkdir(parents=True, exist_ok=True)
        (etc / name).write_text(text, encoding="utf-8")
    for program in INSTALLED_PROGRAMS:
        stub = root / program.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    return root


def verify(root: Path, names: tuple[str, ...] | list[str]) -> tuple[int, str]:
    exe = tool("systemd-analyze", "systemd")
    etc = root / "etc" / "systemd" / "system"
    result = subprocess.run([exe, "verify", "--man=no", "--generators=no", f"--root={root}",
                             *(str(etc / n) for n in names)], capture_output=True, text=True, timeout=60)
    return result.returncode, (result.stdout + result.stderr).strip()


def shipped_units() -> dict[str, str]:
    return {name: (SYSTEMD / name).read_text(encoding="utf-8") for name in UNITS}


# A stand-in for Debian's haproxy.service, to verify our drop-in on
HAPROXY_SERVICE = """[Unit]
Description=HAProxy Load Balancer
[Service]
Environment="CONFIG=/etc/haproxy/haproxy.cfg"
ExecStart=/usr/sbin/haproxy -Ws -f $CONFIG
Type=notify
[Install]
WantedBy=multi-user.target
"""


def test_units_pass_systemd_analyze_verify(tmp_path):
    units = shipped_units() | {
        "haproxy.service": HAPROXY_SERVICE,
        "haproxy.service.d/yingji.conf": (SYSTEMD / "haproxy.service.d" / "yingji.conf").read_text(encoding="utf-8"),
    }
    root = systemd_root(tmp_path, units)
    code, output = verify(root, [*INSTANCES, "haproxy.service"])
    assert code == 0 and not output, f"systemd-analyze verify:\n{output}"


@pytest.mark.parametrize(
    ("unit", "old", "new"),
    [
        ("yingji-worker@.service", "ProtectSystem=strict", "ProtectSystem=strickt"),  # a bad value, ignored by systemd
        ("yingji-api@.service", "Restart=on-failure", "Restart=sometimes"),
        ("yingji-delivery.service", "\nUser=yingji", "\nUsr=yingji"),  # an unknown key
        ("yingji-kafka@.service", "LimitNOFILE=100000", "LimitNOFILE=plenty"),
        ("yingji-kafka@.service", "/opt/kafka/bin/kafka-server-start.sh", "/opt/kafka/bin/kafka-start.sh"),
        ("yingji-topics.service", "[Service]", "[Servce]"),
        ("yingji-worker@.service", "LoadCredential=seal.key:", "LoadCredential=seal.key/"),
    ],
    ids=["bad-value", "bad-restart", "unknown-key", "bad-limit", "missing-program", "bad-section", "bad-credential"],
)
def test_verify_complains_about_a_broken_unit(tmp_path, unit, old, new):
    """The check above fails on a real mistake: each of these breakages makes verify say so."""
    units = shipped_units()
    assert old in units[unit]
    units[unit] = units[unit].replace(old, new, 1)
    root = systemd_root(tmp_path, units)
    code, output = verify(root, INSTANCES)
    assert code != 0 or output, f"verify took a broken {unit} ({old!r} -> {new!r}) without a word"


def security_exposure(root: Path, name: str) -> subprocess.CompletedProcess[str]:
    exe = tool("systemd-analyze", "systemd")
    unit = root / "etc" / "systemd" / "system" / name
    return subprocess.run([exe, "security", "--offline=yes", f"--root={root}", f"--threshold={EXPOSURE_THRESHOLD}",
                           "--no-pager", str(unit)], capture_output=True, text=True, timeout=60)


def test_units_stay_hardened(tmp_path):
    units = shipped_units()
    root = systemd_root(tmp_path, units)
    for name in INSTANCES:
        result = security_exposure(root, name)
        assert result.returncode == 0, f"{name}: exposure over {EXPOSURE_THRESHOLD / 10}:\n{result.stdout[-2000:]}"
    # and without its hardening a unit fails the same check
    worker = units["yingji-worker@.service"]
    units["yingji-worker@.service"] = "\n".join(
        line for line in worker.splitlines()
        if not line.startswith(("Protect", "Private", "Restrict", "CapabilityBoundingSet", "SystemCall", "NoNewPrivileges",
                                "LockPersonality", "UMask")))
    shutil.rmtree(root)
    root = systemd_root(tmp_path, units)
    assert security_exposure(root, "yingji-worker@0.service").returncode != 0


def test_every_unit_runs_as_yingji_with_the_settings_file_and_restarts():
    for name, text in shipped_units().items():
        values = {k: unit_values(text, k) for k in ("User", "Restart", "EnvironmentFile", "NoNewPrivileges",
                                                     "ProtectSystem", "PrivateTmp")}
        assert values["User"] == ["yingji"], name
        assert values["Restart"] == ["on-failure"], name
        assert "/etc/yingji/yingji.env" in values["EnvironmentFile"], name
        assert values["NoNewPrivileges"] == ["yes"] and values["ProtectSystem"] == ["strict"], name
        assert values["PrivateTmp"] == ["yes"], name
        unknown = unknown_yingji_variables(unit_environment(text))
        assert not unknown, f"{name} sets variables no setting reads: {sorted(unknown)}"


def test_long_running_units_may_write_their_data_and_nothing_else():
    """ProtectSystem=strict leaves the file system read-only: each unit that keeps data names where."""
    data = {"yingji-kafka@.service": "/var/lib/yingji/kafka/%i", "yingji-worker@.service": "/var/lib/yingji",
            "yingji-api@.service": "/var/lib/yingji", "yingji-delivery.service": "/var/lib/yingji"}
    for name, path in data.items():
        text = (SYSTEMD / name).read_text(encoding="utf-8")
        writable = " ".join(unit_values(text, "ReadWritePaths")).split()
        assert path in writable, f"{name}: {path} not in ReadWritePaths"
        state = unit_values(text, "StateDirectory")
        assert state and path == "/var/lib/" + state[0], f"{name}: StateDirectory does not make {path}"


def test_kafka_unit_reads_the_nodes_properties_and_is_sized():
    text = (SYSTEMD / "yingji-kafka@.service").read_text(encoding="utf-8")
    (start,) = unit_values(text, "ExecStart")
    assert start.endswith("/etc/yingji/kafka/%i.properties")
    (fmt,) = unit_values(text, "ExecStartPre")
    assert "--ignore-formatted" in fmt and "${KAFKA_CLUSTER_ID}" in fmt and "/etc/yingji/kafka/%i.properties" in fmt
    assert int(unit_values(text, "LimitNOFILE")[0]) >= 100000
    env = unit_environment(text)
    assert env["KAFKA_HEAP_OPTS"] == "-Xms1g -Xmx1g"
    assert "-XX:ParallelGCThreads=2" in env["KAFKA_JVM_PERFORMANCE_OPTS"]
    assert "2 cores" in text
    assert "KAFKA_CLUSTER_ID=" in (SYSTEMD / "yingji.env").read_text(encoding="utf-8")


def test_worker_unit_takes_its_member_id_and_port_from_the_instance():
    text = (SYSTEMD / "yingji-worker@.service").read_text(encoding="utf-8")
    assert unit_environment(text)["YINGJI_WORKER_INSTANCE_ID"] == "%H-worker-%i"
    (start,) = unit_values(text, "ExecStart")
    default = Settings.model_fields["worker_web_port"].default
    assert f"YINGJI_WORKER_WEB_PORT=$$(( $${{YINGJI_WORKER_WEB_PORT:-{default}}} + %i ))" in start
    assert start.endswith("exec /opt/yingji/venv/bin/yingji worker'")


def test_api_unit_listens_on_its_instance_port():
    text = (SYSTEMD / "yingji-api@.service").read_text(encoding="utf-8")
    (start,) = unit_values(text, "ExecStart")
    assert "--factory services.web.app:create_app" in start and "--port %i" in start
    assert unit_environment(text)["YINGJI_API_PORT"] == "%i"


def env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"{path.name}: not NAME=value: {line!r}"
            pairs[name.strip()] = value.strip()
    return pairs


def test_example_env_files_name_only_settings_and_channel_secrets():
    settings = env_file(SYSTEMD / "yingji.env")
    assert not unknown_yingji_variables(settings)
    assert settings["YINGJI_REPLICATION_FACTOR"] == "3" and settings["YINGJI_LOCAL_SINKS"] == "false"
    # the units set these themselves; a value in the file would win over theirs
    assert not {"YINGJI_WORKER_INSTANCE_ID", "YINGJI_API_PORT", "YINGJI_SEAL_KEY_FILE", "YINGJI_ACK_KEY_FILE"} & settings.keys()
    secrets = env_file(SYSTEMD / "channels.env")
    assert set(secrets) == {n for n in channel_variables() if not n.endswith("_FILE")}
    assert not any(secrets.values()), "channels.env is a list of names: no secret is committed"


# --- Kafka's node properties ----------------------------------------------------------------


def properties(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def node_properties(node: int) -> dict[str, str]:
    return properties((SYSTEMD / "kafka" / f"{node}.properties").read_text(encoding="utf-8"))


def test_the_three_nodes_are_one_cluster_that_keeps_acknowledged_writes():
    nodes = {n: node_properties(n) for n in (1, 2, 3)}
    voters = nodes[1]["controller.quorum.voters"]
    assert voters == "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
    for n, props in nodes.items():
        assert props["node.id"] == str(n)
        assert props["process.roles"] == "broker,controller"
        assert props["advertised.listeners"] == f"PLAINTEXT://kafka-{n}:9092"
        assert props["default.replication.factor"] == "3" and props["min.insync.replicas"] == "2"
        assert props["unclean.leader.election.enable"] == "false"
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["transaction.state.log.min.isr"] == "2"
        assert int(props["num.network.threads"]) <= 2 and int(props["num.io.threads"]) <= 4
        differing = {k for k in props.keys() | nodes[1].keys() if props.get(k) != nodes[1].get(k)}
        assert differing <= {"node.id", "advertised.listeners", "log.dirs"}, f"node {n} differs in {differing}"


def kafka_version() -> str:
    pom = (DEPLOY / "kafka" / "pom.xml").read_text(encoding="utf-8")
    return re.search(r"<kafka.version>([^<]+)</kafka.version>", pom).group(1)


def storage_tool_format(config: dict[str, str], cluster_id: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """Kafka's own `kafka-storage format` (what yingji-kafka@.service and the image run before the broker),
    on the node's configuration with its log dir moved under `workdir`: it refuses a configuration the
    broker would refuse (a bad value, a node that is not a voter, a listener without a protocol)."""
    java = shutil.which("java")
    if java is None:
        pytest.fail("java is not on PATH (Kafka's StorageTool checks the node properties)")
    if not any(KAFKA_LIB.glob("kafka_2.13-*.jar")):
        pytest.fail(f"no Kafka jars in {KAFKA_LIB}: run `make test` (it runs `make kafka-jars`)")
    config = {**config, "log.dirs": str(workdir / "data")}
    props = workdir / "server.properties"
    props.write_text("".join(f"{k}={v}\n" for k, v in config.items()), encoding="utf-8")
    cmd = [java, "-Xmx128m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-XX:ActiveProcessorCount=1",
           f"-Dlog4j2.configurationFile={DEPLOY / 'kafka' / 'log4j2.yaml'}", "-cp", f"{KAFKA_LIB}/*",
           "kafka.tools.StorageTool", "format", "--cluster-id", cluster_id, "--config", str(props)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


# --- compose --------------------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def compose_schema_validator():
    """The Compose Specification's JSON Schema as check-jsonschema ships it (its builtin
    `vendor.compose-spec`, the compose-spec project's schema, Apache-2.0), with jsonschema's validator
    for the draft the schema names: offline, nothing fetched."""
    import jsonschema

    schema = json.loads(resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
                        .read_text(encoding="utf-8"))
    assert schema["title"] == "Compose Specification"
    # it names draft-07 by an https address jsonschema does not know it by
    assert "draft-07" in schema["$schema"]
    cls = jsonschema.Draft7Validator
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def compose_schema_errors(text: str) -> list[str]:
    doc = yaml.safe_load(text)  # YAML anchors and merge keys resolved, as Compose resolves them
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in sorted(compose_schema_validator().iter_errors(doc), key=str)]


def test_compose_file_matches_the_compose_specification():
    errors = compose_schema_errors(COMPOSE.read_text(encoding="utf-8"))
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("    hostname: kafka-1\n", "    hostnam: kafka-1\n"),
        ("condition: service_healthy", "condition: healthy"),
        ("  restart: unless-stopped\n", "  restart: [unless-stopped]\n"),
    ],
    ids=["unknown-key", "bad-condition", "bad-type"],
)
def test_the_schema_check_refuses_a_broken_compose_file(old, new):
    text = COMPOSE.read_text(encoding="utf-8")
    assert old in text
    assert compose_schema_errors(text.replace(old, new, 1))


def kafka_services(doc: dict) -> dict[str, dict]:
    return {name: svc for name, svc in doc["services"].items() if str(svc.get("image", "")).startswith("apache/kafka:")}


def compose_kafka_config(svc: dict) -> dict[str, str]:
    """What the apache/kafka image runs: its mounted server.properties (file input), then each KAFKA_*
    variable as a property (KAFKA_A_B -> a.b, __ -> _, ___ -> -), the variables winning."""
    (mount,) = [v for v in svc["volumes"] if v.split(":")[1] == "/mnt/shared/config/server.properties"]
    config = properties((COMPOSE.parent / mount.split(":")[0]).read_text(encoding="utf-8"))
    excluded = {"KAFKA_HEAP_OPTS", "KAFKA_JVM_PERFORMANCE_OPTS", "KAFKA_OPTS", "KAFKA_LOG4J_OPTS", "KAFKA_JMX_OPTS",
                "KAFKA_GC_LOG_OPTS", "KAFKA_VERSION"}
    for name, value in svc["environment"].items():
        if name.startswith("KAFKA_") and name not in excluded:
            key = name.removeprefix("KAFKA_").lower().replace("_", ".").replace("...", "-").replace("..", "_")
            config[key] = str(value)
    return config


def cluster_id(doc: dict, svc: dict) -> str:
    value = str(svc["environment"]["CLUSTER_ID"])
    return re.fullmatch(r"\$\{KAFKA_CLUSTER_ID:-([A-Za-z0-9_-]{22})\}", value).group(1)


def test_compose_runs_three_kafka_nodes_of_one_cluster():
    doc = compose()
    nodes = kafka_services(doc)
    assert sorted(nodes) == ["kafka-1", "kafka-2", "kafka-3"]
    assert {svc["image"] for svc in nodes.values()} == {f"apache/kafka:{kafka_version()}"}
    assert len({cluster_id(doc, svc) for svc in nodes.values()}) == 1
    for name, svc in nodes.items():
        config = compose_kafka_config(svc)
        assert svc["hostname"] == name and config["node.id"] == name.removeprefix("kafka-")
        assert config["advertised.listeners"] == f"PLAINTEXT://{name}:9092"
        assert config["controller.quorum.voters"] == "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
        assert config["default.replication.factor"] == "3" and config["min.insync.replicas"] == "2"
        assert config["unclean.leader.election.enable"] == "false"
        data = [v for v in svc["volumes"] if v.split(":")[1] == config["log.dirs"]]
        assert data and data[0].split(":")[0] in doc["volumes"], f"{name}: its log dir is not on a volume"


def test_kafka_accepts_every_nodes_configuration(tmp_path):
    """The three compose nodes' effective configurations (the systemd nodes' files, their log dir
    moved) through StorageTool, two at a time; then a broken one, refused."""
    doc = compose()
    nodes = kafka_services(doc)
    jobs = {name: (compose_kafka_config(svc), cluster_id(doc, svc)) for name, svc in nodes.items()}
    broken = dict(jobs["kafka-1"][0], **{"node.id": "4"})  # not a voter
    jobs["broken"] = (broken, jobs["kafka-1"][1])
    for name in jobs:
        (tmp_path / name).mkdir()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(jobs, pool.map(lambda n: storage_tool_format(*jobs[n], tmp_path / n), jobs)))
    for name in nodes:
        result = results[name]
        assert result.returncode == 0, f"{name}: kafka-storage format refused it:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        assert (tmp_path / name / "data" / "meta.properties").is_file()
    assert results["broken"].returncode != 0, "StorageTool took a node id that is not a voter"


def yingji_services(doc: dict) -> dict[str, dict]:
    return {name: svc for name, svc in doc["services"].items() if svc.get("image") == "yingji:local"}


def test_compose_runs_two_workers_two_apis_and_the_delivery_stage():
    doc = compose()
    services = yingji_services(doc)
    commands = {name: svc["command"] for name, svc in services.items()}
    workers = sorted(n for n, c in commands.items() if c == ["yingji", "worker"])
    apis = sorted(n for n, c in commands.items() if c[:3] == ["uvicorn", "--factory", "services.web.app:create_app"])
    assert workers == ["worker-0", "worker-1"] and apis == ["api-1", "api-2"]
    assert [n for n, c in commands.items() if c == ["yingji", "delivery"]] == ["delivery"]
    ids = [services[w]["environment"]["YINGJI_WORKER_INSTANCE_ID"] for w in workers]
    assert ids == workers, "each worker has its own static member id"
    assert {services[w]["volumes"][0].split(":")[0] for w in workers} == {"worker-0", "worker-1"}
    assert services["delivery"]["hostname"] == "delivery", "the stage's member id is its host name's"
    for name, svc in services.items():
        env = svc["environment"]
        assert env["YINGJI_BOOTSTRAP_SERVERS"] == ",".join(f"{k}:9092" for k in sorted(kafka_services(doc)))
        assert env["YINGJI_REPLICATION_FACTOR"] == "3", name
        assert set(svc["secrets"]) == {"seal_key", "ack_key"}, name
        assert env["YINGJI_SEAL_KEY_FILE"] == "/run/secrets/seal_key", name
        assert not unknown_yingji_variables(env), name
        build = svc["build"]
        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert "8080:8080" in doc["services"]["haproxy"]["ports"]
    mounted = doc["services"]["haproxy"]["volumes"][0].split(":")[0]
    assert (COMPOSE.parent / mounted).resolve() == HAPROXY


def test_dockerfile_builds_the_project_on_python_3_11_slim():
    text = DOCKERFILE.read_text(encoding="utf-8")
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms[-1] == "python:3.11-slim"
    assert "pip install -c constraints.txt ." in text
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in src.split():
            assert (ROOT / path).exists(), f"the Dockerfile copies {path}, which is not in the repository"
    # the packages pyproject.toml ships are all copied in
    for package in ("topics", "playbooks", "services"):
        assert re.search(rf"^COPY {package} ", text, re.M), package
    assert re.search(r"^USER 10001", text, re.M), "the service does not run as root"


# --- haproxy --------------------------------------------------------------------------------


def haproxy_check(path: Path, env: dict[str, str], *, zero_warnings: bool) -> subprocess.CompletedProcess[str]:
    exe = tool("haproxy", "haproxy")
    args = [exe, "-c", *(["-dW"] if zero_warnings else []), "-f", str(path)]
    return subprocess.run(args, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/sbin:/usr/bin:/bin", **env})


def test_haproxy_config_is_valid():
    # as compose runs it: the servers by name (not resolvable here: haproxy warns, and starts all the same)
    result = haproxy_check(HAPROXY, {}, zero_warnings=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # as systemd runs it, on loopback: not a single warning
    loopback = {"YINGJI_API_1": "127.0.0.1:8081", "YINGJI_API_2": "127.0.0.1:8082"}
    result = haproxy_check(HAPROXY, loopback, zero_warnings=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old", "new"),
    [("balance leastconn", "balance leastconns"), ("timeout tunnel 1h", "timeout tunnel one-hour"),
     ("    option httpchk\n", "    option httpchek\n")],
    ids=["bad-balance", "bad-timeout", "unknown-option"],
)
def test_haproxy_check_refuses_a_broken_config(tmp_path, old, new):
    text = HAPROXY.read_text(encoding="utf-8")
    assert old in text
    broken = tmp_path / "haproxy.cfg"
    broken.write_text(text.replace(old, new, 1), encoding="utf-8")
    result = haproxy_check(broken, {"YINGJI_API_1": "127.0.0.1:8081", "YINGJI_API_2": "127.0.0.1:8082"},
                           zero_warnings=True)
    assert result.returncode != 0


def haproxy_section(name: str) -> list[str]:
    lines, inside = [], False
    for line in HAPROXY.read_text(encoding="utf-8").splitlines():
        if line and not line[0].isspace():
            inside = line.split("#")[0].strip() == name
            continue
        if inside and line.strip() and not line.strip().startswith("#"):
            lines.append(line.strip())
    return lines


def test_haproxy_balances_the_apis_checked_on_their_health_endpoint():
    backend = haproxy_section("backend yingji_api")
    assert "balance leastconn" in backend and "option httpchk" in backend
    assert "http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host yingji" in backend
    assert "http-check expect status 200" in backend
    assert any(line.startswith("default-server check ") for line in backend)
    servers = [line.split()[2] for line in backend if line.startswith("server ")]
    # the defaults are compose's API services on the API's port
    apis = sorted(n for n, s in yingji_services(compose()).items() if s["command"][0] == "uvicorn")
    port = Settings.model_fields["api_port"].default
    assert servers == [f'"${{YINGJI_API_{i + 1}-{name}:{port}}}"' for i, name in enumerate(apis)]
    # the health endpoint is the API's own readiness route
    assert '@router.get("/healthz"' in (ROOT / "services" / "web" / "routes" / "health.py").read_text(encoding="utf-8")
    assert "bind :8080" in haproxy_section("frontend yingji")
    stats = haproxy_section("frontend stats")
    assert "http-request use-service prometheus-exporter if { path /metrics }" in stats


def seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h)?", value).groups()
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 0.001}[unit]


def test_haproxy_keeps_the_boards_event_stream_open():
    """/board/stream is silent between the API's pings: no timeout that reads or writes it may be shorter."""
    from services.web.board import KEEPALIVE_S

    defaults = {line.split()[1]: line.split()[2] for line in haproxy_section("defaults") if line.startswith("timeout ")}
    assert seconds(defaults["client"]) >= 4 * KEEPALIVE_S
    assert seconds(defaults["server"]) >= 4 * KEEPALIVE_S
    assert seconds(defaults["tunnel"]) >= 3600
    stream = [line for line in haproxy_section("backend yingji_api") if "/board/stream" in line]
    assert stream == ["http-request set-timeout server 5m if { path /board/stream }"]


# --- Kubernetes -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    exe = shutil.which("kubectl")
    if exe is None:
        pytest.fail("kubectl is not on PATH (it renders deploy/k8s with its built-in kustomize)")
    result = subprocess.run([exe, "kustomize", str(K8S_PRODUCTION)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_every_rendered_object_matches_the_kubernetes_schemas(rendered):
    import kubernetes_validate

    assert {d["kind"] for d in rendered} >= {"ConfigMap", "Deployment", "StatefulSet", "Service", "PodDisruptionBudget"}
    for doc in rendered:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


@pytest.mark.parametrize(
    "breakage",
    ["unknown-field", "wrong-type", "missing-required"],
)
def test_the_schema_check_refuses_a_broken_object(rendered, breakage):
    import copy

    import kubernetes_validate

    doc = copy.deepcopy(next(d for d in rendered if d["kind"] == "Deployment"))
    container = doc["spec"]["template"]["spec"]["containers"][0]
    if breakage == "unknown-field":
        container["livenesProbe"] = container.pop("livenessProbe")  # a typo
    elif breakage == "wrong-type":
        doc["spec"]["replicas"] = "two"
    else:
        del doc["spec"]["selector"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def by_kind(rendered: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in rendered if d["kind"] == kind}


def pod_specs(rendered: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in rendered
            if d["kind"] in {"Deployment", "StatefulSet", "Job"}}


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def test_workers_are_a_statefulset_whose_pod_names_are_their_member_ids(rendered):
    worker = by_kind(rendered, "StatefulSet")["yingji-worker"]
    assert worker["spec"]["replicas"] >= 2 and worker["spec"]["podManagementPolicy"] == "Parallel"
    assert worker["spec"]["serviceName"] in by_kind(rendered, "Service")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["yingji", "worker"]
    member = env_of(container)["YINGJI_WORKER_INSTANCE_ID"]
    assert member["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    data = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert data["/var/lib/yingji"] in {t["metadata"]["name"] for t in worker["spec"]["volumeClaimTemplates"]}
    port = Settings.model_fields["worker_web_port"].default
    assert f"http://127.0.0.1:{port}/" in " ".join(container["livenessProbe"]["exec"]["command"])


def test_delivery_is_a_statefulset_of_one(rendered):
    delivery = by_kind(rendered, "StatefulSet")["yingji-delivery"]
    assert delivery["spec"]["replicas"] == 1
    (container,) = delivery["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["yingji", "delivery"]
    refs = [next(iter(r.values()))["name"] for r in container["envFrom"]]
    assert "yingji-channels" in refs
    port = Settings.model_fields["delivery_web_port"].default
    assert f"http://127.0.0.1:{port}/" in " ".join(container["livenessProbe"]["exec"]["command"])


def test_the_api_is_a_deployment_behind_a_service_and_a_disruption_budget(rendered):
    api = by_kind(rendered, "Deployment")["yingji-api"]
    labels = api["spec"]["template"]["metadata"]["labels"]
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["command"][:3] == ["uvicorn", "--factory", "services.web.app:create_app"]
    port = container["ports"][0]["containerPort"]
    assert container["command"][container["command"].index("--port") + 1] == str(port)
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    # liveness: a public page the API serves itself, not /healthz (503 while Kafka is away)
    liveness = container["livenessProbe"]["httpGet"]["path"]
    assert liveness != "/healthz"
    routes = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "services" / "web" / "routes").glob("*.py"))
    assert f'@router.get("{liveness}"' in routes
    pdb = by_kind(rendered, "PodDisruptionBudget")["yingji-api"]
    assert pdb["spec"]["minAvailable"] == 1
    service = by_kind(rendered, "Service")["yingji-api"]
    for selector in (pdb["spec"]["selector"]["matchLabels"], service["spec"]["selector"]):
        assert selector.items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in {port, container["ports"][0]["name"]}


def test_settings_come_from_the_configmap_and_keys_from_a_secret_never_committed(rendered):
    (config,) = by_kind(rendered, "ConfigMap").values()
    data = config["data"]
    assert not unknown_yingji_variables(data)
    assert data["YINGJI_BOOTSTRAP_SERVERS"].endswith("-kafka-bootstrap.kafka.svc:9092")  # Strimzi's bootstrap
    assert data["YINGJI_REPLICATION_FACTOR"] == "3" and data["YINGJI_LOCAL_SINKS"] == "false"
    assert not by_kind(rendered, "Secret"), "a Secret's values would be committed"
    mount = str(Path(data["YINGJI_SEAL_KEY_FILE"]).parent)
    for name, spec in pod_specs(rendered).items():
        for container in spec["containers"]:
            refs = [r["configMapRef"]["name"] for r in container.get("envFrom", []) if "configMapRef" in r]
            assert refs == [config["metadata"]["name"]], name
            assert not unknown_yingji_variables(env_of(container)), name
            if name != "yingji-topics":
                keys = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
                volume = next(v for v in spec["volumes"] if v["name"] == keys[mount])
                assert volume["secret"]["secretName"] == "yingji-keys", name


def test_every_pod_has_resources_and_the_restricted_security_context(rendered):
    for name, spec in pod_specs(rendered).items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for container in spec["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys() and {"cpu", "memory"} <= resources["limits"].keys(), name
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"], name
    (namespace,) = by_kind(rendered, "Namespace").values()
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {d["metadata"].get("namespace") for d in rendered if d["kind"] != "Namespace"} == {namespace["metadata"]["name"]}
