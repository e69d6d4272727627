"""The one settings object: environment variables with the prefix YINGJI_ (no other file reads os.environ)."""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from topics.catalog import KEYED_PARTITIONS

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every knob of the service.

    bootstrap_servers: a Kafka cluster to use; empty means `yingji run` starts the local Apache Kafka
    node (data under data_dir/kafka, kept across restarts) and uses it.
    """

    model_config = SettingsConfigDict(env_prefix="YINGJI_", extra="ignore")

    bootstrap_servers: str = Field(default="", description="host:port[,host:port]; empty: local Kafka")
    data_dir: Path = Field(default=REPO_ROOT / ".data", description="local broker data, keys, worker state")
    vendor_dir: Path = Field(default=REPO_ROOT / ".web" / "vendor", description="the pages' third-party scripts (Apache ECharts), put there by `make web-assets` and served at /static/vendor/")
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_heap: str = "512m"
    kafka_nodes: int = Field(default=1, description="local Apache Kafka nodes `yingji run` starts: 1 (one combined node on kafka_port and kafka_controller_port), or 3 (`make run-cluster`: three combined broker+controller nodes, node i on kafka_port + 2(i-1) and the port after it as its controller; topics on 3 replicas, min.insync.replicas 2)")
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_replicas: int = Field(default=1, ge=1, le=16, description="API processes `yingji run` starts. 1: it serves on api_port itself. 2 or more: replica i (0, 1, ...) on 127.0.0.1:api_port + 1 + i, and Debian's haproxy on api_port in front of them (config rendered from deploy/haproxy/local.cfg.template into data_dir/haproxy.cfg, checked with `haproxy -c`); the replicas agree through the log (reports' dedup, drills, users), and share the seal and ack keys of data_dir")
    haproxy_bin: str = Field(default="haproxy", description="the haproxy program (Debian package `haproxy`) `yingji run` puts in front of api_replicas >= 2")
    haproxy_stats_port: int = Field(default=8404, ge=0, description="haproxy's stats page (/stats) and Prometheus metrics (/metrics) on 127.0.0.1, with api_replicas >= 2; 0: none")
    worker_web_port: int = 6066
    workers: int = Field(default=1, ge=0, description="worker processes `yingji run` starts, in one consumer group: the partitions, and so the incidents, are shared between them; worker i serves its metrics on worker_web_port + i. A worker is one Python process, one core at most: on 2 cores, bench deadlines (555 breaches/s) had a breach p99 of 19.4 s with one worker and 0.69-1.9 s with two. 0: one per core, at most topic_partitions. Default 1: with two, a worker joining while records flow made Faust skip records (the watchdog restarts it in place, resetting its counters) in one of three test runs")
    worker_standby_replicas: int = Field(default=1, ge=0, description="warm standby copies of each partition's table that the other workers of the group keep (Faust's table_standby_replicas): a worker that takes a dead worker's partitions has their table on its disk already and reads only the changelog's last records instead of all of it. No effect with one worker; each standby costs its holder a read of that changelog as it is written. 0: none")
    worker_standby_buffer: int = Field(default=1000, ge=1, description="changelog records a standby copy gathers in memory before writing them to its disk (Faust's standby_buffer_size; its default). Whatever is gathered is written when partitions move, so a takeover starts from every record the standby has read; smaller only makes the copy on disk follow sooner (tests read it there)")
    worker_store: str = Field(default="rocksdb://", description="where the worker keeps its table: rocksdb:// on local disk under data_dir (a restarted worker reads only the changelog written since), or memory:// (it reads the whole changelog)")
    worker_instance_id: str = Field(default="", description="the worker's static group membership id: a restarted worker takes its partitions straight back instead of waiting for its old session to expire; empty: the host and worker port")
    app_id: str = Field(default="yingji", description="Faust application id (consumer group, changelogs)")
    topic_partitions: int = Field(default=KEYED_PARTITIONS, ge=1, description="partitions the catalog's keyed topics are created with (`yingji topics`, `yingji run`); default the catalog's figure (topics/catalog.py says why 12). Topics that exist keep theirs: a worker takes its count from the cluster, and growing is `yingji migrate partitions` (deploy/MIGRATION.md)")
    replication_factor: int = Field(default=1, description="topics' replication; 3 on a production cluster")
    log_json: bool | None = Field(default=None, description="JSON logs; default: JSON unless on a terminal")
    log_level: str = "INFO"
    consumer_max_fetch_bytes: int = Field(default=1024**2, description="most bytes a fetch returns per partition. Table recovery reads the changelog with it (20,000 incidents: 1 MiB 34.7 s, 16 MiB 19.4 s), but at 16 MiB a flood of due checks held new reports back for minutes (the fetcher served the commands backlog first), so it stays at 1 MiB")
    consumer_fetch_max_wait_ms: int = Field(default=100, ge=1, description="longest the broker holds the worker's fetch when it has nothing new: also how long new reports can wait unseen when a fetch went out for idle partitions only (services/consumer_fetch.py). Faust's own: 1,500 ms")
    producer_linger_s: float = Field(default=0.0, description="how long the worker's producer waits to fill a batch (bench: 0 s 99/s, 1 ms 90/s, 5 ms 72/s)")
    worker_batch_max: int = Field(default=500, description="most inbound records the worker handles as one batch: one wait for the broker's acknowledgements per batch")
    worker_batch_within_s: float = Field(default=0.005, description="how long the worker waits to fill a batch before handling what it has")
    due_checks_per_tick: int = Field(default=100, ge=1, description="most due incidents the worker checks for one partition's tick, earliest first; the rest wait in its schedule, not on a topic, and the next tick follows at once. A batch holds at most one tick per partition, so a new report waits behind at most partitions x this many checks")
    fault_stall_after: int = Field(default=0, description="fault injection (tests): the first worker process stops taking records after this many; 0: never")
    fault_skip_after: int = Field(default=0, description="fault injection (tests): the first worker process drops five records after this many; 0: never")
    worker_restarts: int = Field(default=0, ge=0, description="in-place restarts of this worker process so far (set by the watchdog's restart, not by hand); fault injections act only before the first")
    stall_restart_s: float = Field(default=30.0, description="worker restarts itself after this long with lag and no progress; 0: never")
    library_log_level: str = Field(default="WARNING", description="level of Faust's, aiokafka's and kafka-python's own logs")
    token: SecretStr = Field(default=SecretStr(""), description="a user's bearer token for commands that call the API (`yingji drill run`)")
    seal_key_file: Path | None = Field(default=None, description="Fernet key sealing personal data")
    max_body_bytes: int = 64 * 1024
    max_upload_bytes: int = Field(default=4 * 1024 * 1024, description="a 值班表 (.xlsx/.csv/.ics) upload")
    # issue 19: delivery. The channels' secrets are read from the environment by their own names
    # (playbooks/data/channels.yaml url_env/secret_env, or NAME_FILE): see channel_env.
    channels_file: Path | None = Field(default=None, description="the channels' YAML; default playbooks/data/channels.yaml")
    channels: str = Field(default="", description="comma-separated channel ids the delivery stage uses; empty: every channel in the file (each must then have its secret)")
    ladder_file: Path | None = Field(default=None, description="the re-notification ladder's YAML; default playbooks/data/ladder.yaml")
    ack_key_file: Path | None = Field(default=None, description="key signing the ack links (/ack/{token}); made once under data_dir")
    ack_max_age_hours: float = Field(default=72.0, gt=0, description="an ack link works this long (our choice: a weekend's shifts)")
    public_url: str = Field(default="", description="the API's address as people open it, for the ack links in messages; empty: api_url")
    delivery_web_port: int = Field(default=6090, description="the delivery stage's metrics port")
    delivery_group: str = Field(default="yingji-delivery", description="the delivery stage's consumer group")
    delivery_max_in_flight: int = Field(default=200, ge=1, description="tries the delivery stage has under way at once; more wait their turn in its books (a burst of 10,000 notices never opens 10,000 connections)")
    delivery_channel_concurrency: int = Field(default=16, ge=1, description="sends under way at once per channel (SMTP connections, webhook requests)")
    sinks_smtp_port: int = Field(default=8025, description="`yingji run`'s local SMTP server (a Maildir under data_dir/mail)")
    sinks_http_port: int = Field(default=8026, description="`yingji run`'s local chat-robot and SMS-gateway sink")
    local_sinks: bool = Field(default=True, description="`yingji run` starts the local SMTP server and robot sink and points the channels at them, unless the channel variables are set")

    @property
    def worker_processes(self) -> int:
        return self.workers or max(1, min(os.cpu_count() or 1, self.topic_partitions))

    @property
    def group_instance_id(self) -> str:
        return self.worker_instance_id or f"{socket.gethostname()}-{self.worker_web_port}"

    @property
    def delivery_instance_id(self) -> str:
        """The delivery stage's static group membership: restarted, it takes its partitions straight back."""
        return f"{socket.gethostname()}-delivery-{self.delivery_web_port}"

    @property
    def worker_dir(self) -> Path:
        """One worker's own local state (two workers never share a table store)."""
        return self.data_dir / "worker" / self.app_id / self.group_instance_id

    @property
    def local_bootstrap(self) -> str:
        if self.kafka_nodes > 1:
            return ",".join(f"127.0.0.1:{self.kafka_port + 2 * i}" for i in range(self.kafka_nodes))
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def topic_replication(self) -> int:
        """The catalog's topics' replication: the setting, or 3 on the local three-node cluster."""
        return max(self.replication_factor, min(3, self.kafka_nodes) if not self.bootstrap_servers else 1)

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_servers or self.local_bootstrap

    @property
    def key_file(self) -> Path:
        return self.seal_key_file or (self.data_dir / "seal.key")

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    def api_replica_port(self, index: int) -> int:
        """Where API replica `index` listens when api_replicas >= 2 (haproxy takes api_port)."""
        return self.api_port + 1 + index

    @property
    def link_base(self) -> str:
        """Where an ack link points: the public address, or the API's own."""
        return (self.public_url or self.api_url).rstrip("/")

    @property
    def ack_key_path(self) -> Path:
        return self.ack_key_file or (self.data_dir / "ack.key")

    @property
    def channel_ids(self) -> set[str] | None:
        ids = {c.strip() for c in self.channels.split(",") if c.strip()}
        return ids or None

    @staticmethod
    def channel_env() -> dict[str, str]:
        """The environment the channels' secrets are read from (their names are in channels.yaml)."""
        return {k: v for k, v in os.environ.items() if k.startswith("YINGJI_")}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
