"""The local stack as processes: Apache Kafka, the worker, the API and the local sinks. `yingji run`,
the fault tests and the benchmarks all start it the same way."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, retry_if_result, stop_after_delay, wait_fixed

from services.kafka_topics import create_topics
from services.local.cluster import LocalCluster
from services.local.kafka import LocalKafka
from services.local.sinks import sinks_env
from services.settings import REPO_ROOT, Settings

HAPROXY_TEMPLATE = REPO_ROOT / "deploy" / "haproxy" / "local.cfg.template"


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    """`sig` to the process's group, SIGKILL after `timeout` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _wait_ready(proc: subprocess.Popen, url: str, what: str, timeout: float) -> None:
    """Until `url`/healthz answers 200; raises if `proc` exits first or `timeout` passes."""

    def ready() -> bool:
        if proc.poll() is not None:  # not retried: the process is gone
            raise RuntimeError(f"{what} exited during start-up")
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200

    def gave_up(_: RetryCallState) -> None:
        stop_group(proc)  # not left behind: a caller that tries another port would leak one process a try
        raise RuntimeError(f"{what} did not answer at {url} within {timeout:.0f}s")

    Retrying(retry=retry_if_exception_type(httpx.HTTPError) | retry_if_result(lambda ok: not ok),
             wait=wait_fixed(0.2), stop=stop_after_delay(timeout), retry_error_callback=gave_up)(ready)


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL, as a crash would: no clean shutdown, no final commit."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class LocalStack:
    """`log`: every process's output into that one file (lines may then interleave between processes).
    `log_dir`: a file of its own for each process, written by that process alone: `worker-<i>.log` for
    worker i, `api.log` (or `api-<i>.log` for API replica i and `haproxy.log`; see `log_path`); what a reader parses there is whole lines of one writer.
    Neither: the processes inherit this one's stdout and stderr."""

    def __init__(self, settings: Settings, *, log: IO[bytes] | None = None, log_dir: Path | None = None):
        if log is not None and log_dir is not None:
            raise ValueError("one of log= and log_dir=, not both")
        self.settings = settings
        self.log = log
        self.log_dir = log_dir
        self.broker: LocalKafka | LocalCluster | None = None
        self.worker: subprocess.Popen | None = None
        self.api: subprocess.Popen | None = None  # the one API, or replica 0 of api_replicas
        self.apis: list[subprocess.Popen] = []  # every API replica (api_replicas >= 2)
        self.haproxy: subprocess.Popen | None = None
        self.extra_workers: list[subprocess.Popen] = []
        self.sinks: subprocess.Popen | None = None
        self.delivery: subprocess.Popen | None = None

    @property
    def uses_local_robots(self) -> bool:
        """The channels go to the local sinks: asked for, and the user has not pointed them at real robots."""
        env = self.settings.channel_env()
        return self.settings.local_sinks and not ({"YINGJI_WECOM_ROBOT_URL", "YINGJI_WECOM_ROBOT_URL_FILE"} & env.keys())

    @property
    def env(self) -> dict[str, str]:
        s = self.settings
        local = sinks_env(s) if self.uses_local_robots else {}
        # the processes see the cluster as given (YINGJI_BOOTSTRAP_SERVERS), so they are told its replication too:
        # a worker's table changelog on one replica of three nodes would die with that node
        return {**local, **os.environ, "YINGJI_BOOTSTRAP_SERVERS": s.bootstrap, "YINGJI_DATA_DIR": str(s.data_dir),
                "YINGJI_REPLICATION_FACTOR": str(s.topic_replication),
                "YINGJI_API_PORT": str(s.api_port), "YINGJI_WORKER_WEB_PORT": str(s.worker_web_port)}

    def log_path(self, name: str) -> Path | None:
        """The file process `name` ("worker-0", "worker-1", ..., "api", "sinks") writes to under `log_dir`."""
        return None if self.log_dir is None else Path(self.log_dir) / f"{name}.log"

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        path = self.log_path(name)
        if path is None:
            return subprocess.Popen(args, env={**self.env, **(env or {})}, stdout=self.log,
                                    stderr=subprocess.STDOUT if self.log else None, start_new_session=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as out:  # the child holds its own copy of the descriptor; a restart appends
            return subprocess.Popen(args, env={**self.env, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def start_broker(self) -> None:
        s = self.settings
        if not s.bootstrap_servers and s.kafka_nodes > 1:
            self.broker = LocalCluster(Path(s.data_dir) / "cluster", base_port=s.kafka_port, nodes=s.kafka_nodes).start()
        elif not s.bootstrap_servers:
            self.broker = LocalKafka(Path(s.data_dir) / "kafka", port=s.kafka_port,
                                     controller_port=s.kafka_controller_port, heap=s.kafka_heap).start()
        create_topics(s.bootstrap, replication=s.topic_replication, partitions=s.topic_partitions)

    def _spawn_worker(self, index: int, env: dict[str, str] | None = None) -> subprocess.Popen:
        return self._spawn(f"worker-{index}", [sys.executable, "-m", "services.cli", "worker"], env=env)

    def start_worker(self, env: dict[str, str] | None = None) -> subprocess.Popen:
        self.worker = self._spawn_worker(0, env)
        return self.worker

    def start_workers(self) -> list[subprocess.Popen]:
        """settings.worker_processes workers in one group; worker i serves metrics on worker_web_port + i."""
        self.start_worker()
        for index in range(1, self.settings.worker_processes):
            self.start_worker_at(index)
        return self.workers

    def start_worker_at(self, index: int, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Worker `index` (0 is `worker`), started again in its place when it is there already."""
        if index == 0:
            return self.start_worker(env=env)
        proc = self._spawn_worker(index, {"YINGJI_WORKER_WEB_PORT": str(self.settings.worker_web_port + index),
                                          **(env or {})})
        if index <= len(self.extra_workers):
            self.extra_workers[index - 1] = proc
        else:  # started in order by start_workers
            self.extra_workers.append(proc)
        return proc

    @property
    def workers(self) -> list[subprocess.Popen]:
        return [p for p in (self.worker, *self.extra_workers) if p is not None]

    def kill_workers(self) -> None:
        """Every worker SIGKILLed, as a crash of the machine's workers would."""
        for proc in self.workers:
            _kill(proc)

    def start_second_worker(self, metrics_port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Another worker in the same group: partitions (and their tables) are rebalanced between them."""
        index = len(self.extra_workers) + 1
        self.extra_workers.append(self._spawn_worker(index, {"YINGJI_WORKER_WEB_PORT": str(metrics_port), **(env or {})}))
        return self.extra_workers[-1]

    def start_api(self, timeout: float = 60) -> subprocess.Popen:
        """The API on api_port; with api_replicas >= 2, the replicas and haproxy in front of them on it."""
        s = self.settings
        if s.api_replicas >= 2:
            for index in range(s.api_replicas):  # started together, then each waited for
                self.start_api_replica(index, wait=False)
            for index, proc in enumerate(self.apis):
                _wait_ready(proc, f"http://127.0.0.1:{s.api_replica_port(index)}", f"API replica {index}", timeout)
            self.start_haproxy(timeout=timeout)
            return self.api
        self.api = self._spawn("api", self._api_args(s.api_host, s.api_port))
        _wait_ready(self.api, s.api_url, "the API", timeout)
        return self.api

    @staticmethod
    def _api_args(host: str, port: int) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "--factory", "services.web.app:create_app", "--host", host,
                "--port", str(port), "--log-level", "warning", "--no-access-log", "--timeout-graceful-shutdown", "5"]

    def start_api_replica(self, index: int, timeout: float = 60, *, wait: bool = True) -> subprocess.Popen:
        """API replica `index` on 127.0.0.1:api_replica_port(index) (started again in its place), once ready
        (`wait`).
        Its ack links name the address people open (haproxy's), not its own."""
        s = self.settings
        port = s.api_replica_port(index)
        proc = self._spawn(f"api-{index}", self._api_args("127.0.0.1", port),
                           env={"YINGJI_API_PORT": str(port), "YINGJI_API_HOST": "127.0.0.1",
                                "YINGJI_PUBLIC_URL": s.public_url or s.api_url})
        if index < len(self.apis):
            self.apis[index] = proc
        else:  # started in order by start_api
            self.apis.append(proc)
        self.api = self.apis[0]
        if wait:
            _wait_ready(proc, f"http://127.0.0.1:{port}", f"API replica {index}", timeout)
        return proc

    def kill_api_replica(self, index: int) -> None:
        """API replica `index` SIGKILLed, as a crash would."""
        _kill(self.apis[index])

    def haproxy_config(self) -> Path:
        """deploy/haproxy/local.cfg.template rendered into data_dir/haproxy.cfg for api_replicas, and checked
        with `haproxy -c` (a config it refuses raises, with haproxy's words)."""
        s = self.settings
        servers = "\n".join(f"    server api-{i} 127.0.0.1:{s.api_replica_port(i)}" for i in range(s.api_replicas))
        stats = "" if not s.haproxy_stats_port else (
            "frontend stats\n"
            f"    bind 127.0.0.1:{s.haproxy_stats_port}\n"
            "    http-request use-service prometheus-exporter if { path /metrics }\n"
            "    stats enable\n    stats uri /stats\n    stats refresh 10s\n    option dontlog-normal\n")
        text = (HAPROXY_TEMPLATE.read_text(encoding="utf-8").replace("@BIND@", f"{s.api_host}:{s.api_port}")
                .replace("@SERVERS@", servers).replace("@STATS@", stats))
        path = Path(s.data_dir) / "haproxy.cfg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        check = subprocess.run([s.haproxy_bin, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refused {path}: {check.stdout}{check.stderr}")
        return path

    def start_haproxy(self, timeout: float = 30) -> subprocess.Popen:
        """haproxy in the foreground on api_port, in front of the replicas, once it answers /healthz."""
        s = self.settings
        path = self.haproxy_config()
        self.haproxy = self._spawn("haproxy", [s.haproxy_bin, "-db", "-f", str(path)])
        _wait_ready(self.haproxy, s.api_url, "haproxy", timeout)
        return self.haproxy

    def start_sinks(self, timeout: float = 30) -> subprocess.Popen:
        """`yingji sinks` (the local SMTP server and robot sink), once both its ports answer."""
        s = self.settings
        self.sinks = self._spawn("sinks", [sys.executable, "-m", "services.cli", "sinks"],
                                 env={"YINGJI_SINKS_SMTP_PORT": str(s.sinks_smtp_port),
                                      "YINGJI_SINKS_HTTP_PORT": str(s.sinks_http_port)})
        sinks = self.sinks

        def ready() -> bool:
            if sinks.poll() is not None:  # not retried: the sinks are gone (a port in use: see sinks.log)
                raise RuntimeError("the local sinks exited during start-up")
            with socket.create_connection(("127.0.0.1", s.sinks_smtp_port), timeout=1) as smtp:
                if smtp.recv(3) != b"220":  # the SMTP greeting
                    return False
            return httpx.get(f"http://127.0.0.1:{s.sinks_http_port}/healthz", timeout=1).status_code == 200

        def gave_up(_: RetryCallState) -> None:
            raise RuntimeError(f"the local sinks did not answer on ports {s.sinks_smtp_port} and "
                               f"{s.sinks_http_port} within {timeout:.0f}s")

        Retrying(retry=retry_if_exception_type((httpx.HTTPError, OSError)) | retry_if_result(lambda ok: not ok),
                 wait=wait_fixed(0.2), stop=stop_after_delay(timeout), retry_error_callback=gave_up)(ready)
        return sinks

    def start_delivery(self, env: dict[str, str] | None = None) -> subprocess.Popen:
        """`yingji delivery`, the delivery stage (issue 19), in its own process and consumer group."""
        self.delivery = self._spawn("delivery", [sys.executable, "-m", "services.cli", "delivery"],
                                    env={"YINGJI_DELIVERY_WEB_PORT": str(self.settings.delivery_web_port),
                                         "YINGJI_LOCAL_SINKS": str(self.settings.local_sinks).lower(),
                                         "YINGJI_SINKS_SMTP_PORT": str(self.settings.sinks_smtp_port),
                                         "YINGJI_SINKS_HTTP_PORT": str(self.settings.sinks_http_port),
                                         **(env or {})})
        return self.delivery

    def kill_delivery(self) -> None:
        """The delivery stage SIGKILLed, as a crash would."""
        if self.delivery:
            _kill(self.delivery)

    def kill_worker(self) -> None:
        """The first worker SIGKILLed."""
        if self.worker:
            _kill(self.worker)

    def children(self) -> list[subprocess.Popen]:
        return [p for p in (*self.workers, *self.api_processes, self.delivery, self.sinks) if p is not None]

    @property
    def api_processes(self) -> list[subprocess.Popen]:
        """haproxy and the replicas, or the one API."""
        if self.apis:
            return [p for p in (self.haproxy, *self.apis) if p is not None]
        return [self.api] if self.api is not None else []

    def stop(self) -> None:
        for proc in (*self.api_processes, *self.workers, self.delivery, self.sinks):
            if proc is not None:
                stop_group(proc)
        if self.broker is not None:
            self.broker.stop()
