"""The local sinks `yingji run` starts (issue 19 item 7): where messages arrive on a newcomer's machine,
and the "real servers" the channel and end-to-end tests send to.

- a real SMTP server (aiosmtpd) keeping every message it receives, raw bytes and all, in a Maildir
  (`<data_dir>/mail`: `ls .data/mail/new`);
- a local HTTP server speaking three contracts as the providers document them: the 企业微信 group
  robot (POST /cgi-bin/webhook/send?key=KEY), the 钉钉 robot (POST /robot/send?access_token=T&
  timestamp=MS&sign=S, the signature checked) and the generic signed webhook of an office's SMS
  gateway (POST /sms, X-Yingji-Signature checked). Both robots answer errcode 45009 past 20 messages
  in any 60 s per robot, on an injected clock. Every accepted message is one JSON line in
  `<data_dir>/sinks/<robot>.jsonl` and is kept in memory (GET /messages?robot=wecom).

Both listen on 127.0.0.1 only. The signatures are checked here from the providers' own recipe, not
with services/delivery/channels.py's helpers, so a mistake there is refused here. The local robots'
secrets are made once into `<data_dir>/sinks/*.secret` (readable by the user only), never in the
repository; sinks_env points the channels at the sinks, the secrets by their _FILE variables.

    with Sinks(settings) as sinks: ...          # in this process (tests)
    yingji sinks                                # its own process, until SIGTERM or Ctrl-C (run_sinks)
"""

from __future__ import annotations

import base64
import email
import email.message
import email.policy
import hashlib
import hmac
import itertools
import json
import logging
import mailbox
import os
import secrets
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType

import structlog
import uvicorn
from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from playbooks.delivery.channels import ChannelsFile, EmailChannel
from services.clock import Clock, WallClock
from services.local.kafka import free_port
from services.settings import Settings

log = structlog.get_logger("yingji.sinks")

ROBOTS = ("wecom", "dingtalk", "sms")
ROBOT_LIMIT = 20  # messages a robot takes in any ROBOT_WINDOW (both providers' documentation)
ROBOT_WINDOW = timedelta(seconds=60)
DINGTALK_SKEW_MS = 3600_000  # 钉钉 refuses a timestamp more than an hour from its own clock
LOCAL_ROBOT_KEY = "local"  # the key / access_token in the local robots' URLs: not a secret, 127.0.0.1 only
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def mail_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "mail"


def sinks_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "sinks"


def secret_path(data_dir: Path, robot: str) -> Path:
    return sinks_dir(data_dir) / f"{robot}.secret"


def local_secret(data_dir: Path, robot: str) -> str:
    """The local robot's secret, made once (O_EXCL: two processes starting together agree on one)."""
    path = secret_path(data_dir, robot)
    path.parent.mkdir(parents=True, exist_ok=True)
    value = ("SEC" if robot == "dingtalk" else "") + secrets.token_hex(32)  # 钉钉 secrets start SEC
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(value + "\n")
    return value


def sinks_env(settings: Settings) -> dict[str, str]:
    """The channel variables (playbooks/data/channels.yaml's url_env/secret_env) pointing every channel
    at the local sinks, and the sinks' ports. The secrets go by NAME_FILE: they stay in their files,
    out of every process's environment. The email channel's server is in channels.yaml, not the
    environment: local_channels points it at sinks_smtp_port."""
    base = f"http://127.0.0.1:{settings.sinks_http_port}"
    return {
        "YINGJI_WECOM_ROBOT_URL": f"{base}/cgi-bin/webhook/send?key={LOCAL_ROBOT_KEY}",
        "YINGJI_DINGTALK_ROBOT_URL": f"{base}/robot/send?access_token={LOCAL_ROBOT_KEY}",
        "YINGJI_DINGTALK_ROBOT_SECRET_FILE": str(secret_path(settings.data_dir, "dingtalk")),
        "YINGJI_SMS_WEBHOOK_URL": f"{base}/sms",
        "YINGJI_SMS_WEBHOOK_SECRET_FILE": str(secret_path(settings.data_dir, "sms")),
        "YINGJI_SINKS_SMTP_PORT": str(settings.sinks_smtp_port),
        "YINGJI_SINKS_HTTP_PORT": str(settings.sinks_http_port),
    }


def local_channels(config: ChannelsFile, settings: Settings) -> ChannelsFile:
    """The channels with every email channel that sends to this machine sent to the local SMTP sink's
    port; one pointed at a real mail server is left as it is (the user's choice wins)."""
    channels = [
        c.model_copy(update={"smtp": c.smtp.model_copy(update={"port": settings.sinks_smtp_port, "security": "plain"})})
        if isinstance(c, EmailChannel) and c.smtp.host in LOCAL_HOSTS else c
        for c in config.channels
    ]
    return config.model_copy(update={"channels": channels})


# --- SMTP -----------------------------------------------------------------------------------


class MaildirSink:
    """aiosmtpd's handler: each message's raw bytes into the Maildir as received (the Message-ID by
    which a resend is recognised included), under a Return-Path and a Delivered-To per recipient as a
    local delivery adds them, so the envelope is not lost."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)  # Maildir makes its own folder, not its parents
        self.maildir = mailbox.Maildir(self.path, create=True)
        self.keys: list[str] = []  # in arrival order: Maildir's own names do not sort by time

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        raw = envelope.original_content or envelope.content
        head = f"Return-Path: <{envelope.mail_from}>\r\n" + "".join(f"Delivered-To: {r}\r\n" for r in envelope.rcpt_tos)
        self.keys.append(self.maildir.add(head.encode() + raw))
        return "250 OK kept"

    def messages(self) -> list[email.message.EmailMessage]:
        """What this sink received, read back from the Maildir, oldest first."""
        return [email.message_from_bytes(self.maildir.get_bytes(k), policy=email.policy.default) for k in self.keys]


# --- the robots and the gateway ---------------------------------------------------------------


class RobotSink:
    """The 企业微信 and 钉钉 robots' and the SMS gateway's side: their answers as documented, every
    accepted message in `messages[robot]` and, with a journal_dir, in `<journal_dir>/<robot>.jsonl`.

    accepts_key: which 企业微信 keys name a robot (others: errcode 93000, as for a deleted robot)."""

    def __init__(self, *, dingtalk_secret: str, sms_secret: str, clock: Clock | None = None,
                 journal_dir: Path | None = None, accepts_key: Callable[[str], bool] = bool):
        self._dingtalk_secret = dingtalk_secret
        self._sms_secret = sms_secret
        self.clock = clock or WallClock()
        self.journal_dir = Path(journal_dir) if journal_dir is not None else None
        self._accepts_key = accepts_key
        self.messages: dict[str, list[dict]] = {robot: [] for robot in ROBOTS}
        self._windows: dict[tuple[str, str], deque[datetime]] = {}
        self._gateway_ids = itertools.count(1)
        self._lock = threading.Lock()  # tests read `messages` from another thread than the server's
        if self.journal_dir is not None:
            self.journal_dir.mkdir(parents=True, exist_ok=True)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/cgi-bin/webhook/send", self.wecom, methods=["POST"]),
            Route("/robot/send", self.dingtalk, methods=["POST"]),
            Route("/sms", self.sms, methods=["POST"]),
            Route("/messages", self.list_messages, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
        ])

    def received(self, robot: str, key: str | None = None) -> list[dict]:
        """The bodies `robot` accepted (for one key or access_token when given), oldest first."""
        with self._lock:
            return [m["body"] for m in self.messages[robot] if key is None or m["key"] == key]

    def _over_limit(self, robot: str, key: str) -> bool:
        """ROBOT_LIMIT accepted in the last ROBOT_WINDOW already: counted per robot on the injected clock."""
        now = self.clock.now()
        window = self._windows.setdefault((robot, key), deque())
        while window and now - window[0] >= ROBOT_WINDOW:
            window.popleft()
        return len(window) >= ROBOT_LIMIT

    def _keep(self, robot: str, key: str, body: object, **extra: object) -> dict:
        now = self.clock.now()
        record = {"received_at": now.isoformat(), "robot": robot, "key": key, "body": body, **extra}
        with self._lock:
            if robot != "sms":
                self._windows.setdefault((robot, key), deque()).append(now)
            self.messages[robot].append(record)
            if self.journal_dir is not None:  # one write per line: a reader never sees half a message
                with (self.journal_dir / f"{robot}.jsonl").open("a", encoding="utf-8") as out:
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return record

    @staticmethod
    async def _json(request: Request) -> dict | None:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def wecom(self, request: Request) -> JSONResponse:
        key = request.query_params.get("key", "")
        if not self._accepts_key(key):
            return JSONResponse({"errcode": 93000, "errmsg": "invalid webhook url"})
        body = await self._json(request)
        if body is None or body.get("msgtype") not in ("text", "markdown"):
            return JSONResponse({"errcode": 40008, "errmsg": "invalid message type"})
        if self._over_limit("wecom", key):
            return JSONResponse({"errcode": 45009, "errmsg": "api freq out of limit"})
        self._keep("wecom", key, body)
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    async def dingtalk(self, request: Request) -> JSONResponse:
        q = request.query_params
        token, timestamp, sign = q.get("access_token", ""), q.get("timestamp", ""), q.get("sign", "")
        if not token:
            return JSONResponse({"errcode": 300001, "errmsg": "token is not exist"})
        now_ms = self.clock.now().timestamp() * 1000
        if not timestamp.isdigit() or abs(int(timestamp) - now_ms) > DINGTALK_SKEW_MS:
            return JSONResponse({"errcode": 310000, "errmsg": "invalid timestamp"})
        # the recipe of 钉钉's docs: base64(HmacSHA256(secret, timestamp + "\n" + secret)), URL-encoded
        # in the query (which Starlette has decoded here)
        expected = base64.b64encode(hmac.new(self._dingtalk_secret.encode(), f"{timestamp}\n{self._dingtalk_secret}".encode(),
                                             hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(sign.encode(), expected.encode()):
            return JSONResponse({"errcode": 310000, "errmsg": "sign not match"})
        body = await self._json(request)
        if body is None or not body.get("msgtype"):
            return JSONResponse({"errcode": 40035, "errmsg": "invalid parameter: msgtype"})
        if self._over_limit("dingtalk", token):
            return JSONResponse({"errcode": 45009, "errmsg": "send too fast, exceed 20 times per minute"})
        self._keep("dingtalk", token, body)
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    async def sms(self, request: Request) -> JSONResponse:
        raw = await request.body()
        expected = "sha256=" + hmac.new(self._sms_secret.encode(), raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("x-yingji-signature", "").encode(), expected.encode()):
            return JSONResponse({"error": "bad signature"}, status_code=401)
        try:
            body = json.loads(raw)
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        gateway_id = f"gw-{next(self._gateway_ids)}"
        self._keep("sms", "", body, id=gateway_id, headers={
            name: request.headers[name] for name in ("x-yingji-timestamp", "idempotency-key") if name in request.headers})
        return JSONResponse({"id": gateway_id})

    async def list_messages(self, request: Request) -> JSONResponse:
        robot = request.query_params.get("robot", "")
        if robot not in ROBOTS:
            return JSONResponse({"error": f"robot: one of {list(ROBOTS)}"}, status_code=400)
        key = request.query_params.get("key")
        with self._lock:
            return JSONResponse([m for m in self.messages[robot] if key is None or m["key"] == key])

    async def healthz(self, _: Request) -> JSONResponse:
        return JSONResponse({"ok": True})


# --- serving them -----------------------------------------------------------------------------


class _HttpThread:
    """uvicorn in a thread of its own on a socket bound here, so a port in use fails at once (uvicorn
    binding it in its thread would only end that thread). Off the main thread uvicorn leaves the
    signals alone. No access log: the URLs carry the robots' keys and signatures."""

    def __init__(self, app: Starlette, port: int):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind(("127.0.0.1", port))
        except OSError:
            self._sock.close()
            raise
        self.port = int(self._sock.getsockname()[1])
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="yingji-robot-sink", daemon=True)

    def start(self, timeout: float = 10) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the robot sink did not start on 127.0.0.1:{self.port}")
            time.sleep(0.01)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()


def _bindable(port: int) -> None:
    """OSError (EADDRINUSE) now if 127.0.0.1:port cannot be bound, as asyncio would bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))


class Sinks:
    """The SMTP sink and the robot sink, both in this process (their own threads), on settings'
    sinks_smtp_port and sinks_http_port. `robots`: a RobotSink of the caller's (its own secrets); by
    default the local one, its secrets from `<data_dir>/sinks/*.secret` and its journal beside them."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None, robots: RobotSink | None = None):
        self.settings = settings
        self.mail = MaildirSink(mail_dir(settings.data_dir))
        self.robots = robots or RobotSink(
            dingtalk_secret=local_secret(settings.data_dir, "dingtalk"), sms_secret=local_secret(settings.data_dir, "sms"),
            clock=clock, journal_dir=sinks_dir(settings.data_dir))
        self._smtp: Controller | None = None
        self._http: _HttpThread | None = None

    @classmethod
    def on_free_ports(cls, data_dir: Path, **kwargs) -> "Sinks":
        """Sinks under data_dir on ports that were free a moment ago (tests)."""
        settings = Settings(data_dir=data_dir, sinks_smtp_port=free_port(), sinks_http_port=free_port())
        return cls(settings, **kwargs)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.sinks_http_port}"

    @property
    def smtp_port(self) -> int:
        return self.settings.sinks_smtp_port

    def start(self) -> "Sinks":
        self._http = _HttpThread(self.robots.app(), self.settings.sinks_http_port)
        self._http.start()
        try:
            _bindable(self.settings.sinks_smtp_port)  # aiosmtpd would say a port in use only after its ready_timeout
            self._smtp = Controller(self.mail, hostname="127.0.0.1", port=self.settings.sinks_smtp_port,
                                    server_hostname="localhost", enable_SMTPUTF8=True, ready_timeout=10)
            self._smtp.start()
        except BaseException:
            self._smtp = None
            self.stop()
            raise
        return self

    def alive(self) -> bool:
        smtp_thread = getattr(self._smtp, "_thread", None)  # aiosmtpd's Controller keeps its thread there
        return self._http is not None and self._http.alive() and smtp_thread is not None and smtp_thread.is_alive()

    def stop(self) -> None:
        if self._smtp is not None:
            self._smtp.stop()
            self._smtp = None
        if self._http is not None:
            self._http.stop()
            self._http = None

    def __enter__(self) -> "Sinks":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def run_sinks(settings: Settings) -> int:
    """`yingji sinks`: both sinks until SIGTERM or SIGINT (Ctrl-C)."""
    from services import logs

    logs.configure(json=settings.log_json, level=settings.log_level, library_level=settings.library_log_level)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs senders and recipients at INFO
    stopping = threading.Event()

    def on_signal(_signum, _frame) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sinks = Sinks(settings).start()
    except OSError as exc:  # a port in use, most likely: say which, not a traceback
        log.error("sinks did not start", smtp_port=settings.sinks_smtp_port, http_port=settings.sinks_http_port,
                  error=exc.strerror or type(exc).__name__)
        return 1
    log.info("sinks started", smtp_port=settings.sinks_smtp_port, http_port=settings.sinks_http_port,
             maildir=str(sinks.mail.path), journal=str(sinks_dir(settings.data_dir)))
    try:
        while not stopping.wait(0.5):
            if not sinks.alive():
                log.error("a sink stopped by itself; exiting")
                return 1
        return 0
    finally:
        sinks.stop()
        log.info("sinks stopped")
