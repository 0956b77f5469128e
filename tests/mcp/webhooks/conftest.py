"""Real receivers, a real dispatcher process, real Kafka records."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from pydantic import BaseModel
from standardwebhooks.webhooks import Webhook

from mcp.kafka import ensure_topics, producer_config
from mcp.names import Topics
from mcp.settings import Settings
from schemas import TaskResult, TaskStatus, dumps, utcnow

ROOT = Path(__file__).resolve().parents[3]
SECRET = "whsec_" + base64.b64encode(b"dispatcher-tests-secret-0123456789").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"dispatcher-tests-old-secret-98765").decode()
SECRETS = {"default": [SECRET], "rotating": [SECRET, OLD_SECRET]}


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """An HTTP server on 127.0.0.1 answering each path from a script (its last reply repeats)."""

    def __init__(self, default: Reply | None = None) -> None:
        self.default = default or Reply()
        self.scripts: dict[str, list[Reply]] = {}
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.closing = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    receiver.received.append(Received(self.path, headers, body, time.time()))
                    reply = receiver._next(self.path)
                if reply.hang_s and receiver.closing.wait(reply.hang_s):
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                # HTTP/1.1: a 204 (or 304) answer has no body, so the next answer on the
                # kept-alive connection does not start with a stray one.
                body = b"" if reply.status in (204, 304) else b"ok"
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _next(self, path: str) -> Reply:
        script = self.scripts.get(path)
        if not script:
            return self.default
        return script.pop(0) if len(script) > 1 else script[0]

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def script(self, path: str, *replies: Reply) -> str:
        with self.lock:
            self.scripts[path] = list(replies)
        return self.url(path)

    def on(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def all(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(default: Reply | None = None) -> Receiver:
        made.append(Receiver(default))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def verify(received: Received, secret: str = SECRET) -> Any:
    """Check a webhook with the independent `standardwebhooks` implementation."""
    return Webhook(secret).verify(received.body, received.headers)


def wait_for(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class DispatcherProcess:
    """`autoglm dispatcher` as a real subprocess, so SIGKILL is real."""

    def __init__(self, settings: Settings, log_path: Path, slot: str = "0", **env: Any) -> None:
        self.settings = settings
        self.log_path = log_path
        self.slot = slot
        hooks = {"schedule_s": [0, 0.3, 0.3, 0.3, 0.3], "jitter": 0, "secrets": SECRETS}
        hooks.update(env.pop("webhooks", {}))
        self.env = {
            **os.environ,
            "AUTOGLM_DEV_MODE": "true",
            "AUTOGLM_INSTANCE_ID": settings.instance_id,
            "AUTOGLM_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "AUTOGLM_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
            "AUTOGLM_KAFKA__PARTITIONS": str(settings.kafka.partitions),
            "AUTOGLM_REDIS__URL": settings.redis.url,
            "AUTOGLM_REDIS__KEY_PREFIX": settings.redis.key_prefix,
            "AUTOGLM_LOG_LEVEL": "INFO",
            **{f"AUTOGLM_WEBHOOKS__{k.upper()}": json.dumps(v) for k, v in hooks.items()},
            **{k: str(v) for k, v in env.items()},
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DispatcherProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "autoglm", "dispatcher", "--slot", self.slot],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def dispatcher(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., DispatcherProcess]]:
    started: list[DispatcherProcess] = []

    def start(**env: Any) -> DispatcherProcess:
        process = DispatcherProcess(settings, tmp_path / "dispatcher.log", **env).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


class Publisher:
    """Commits records to the platform topics the way the workers do: in transactions."""

    def __init__(self, settings: Settings) -> None:
        ensure_topics(settings, [])
        self.topics = Topics.of(settings)
        config = producer_config(settings, self.topics.transactional_id("test", "0"))
        self.producer = Producer(config)
        self.producer.init_transactions(30)

    def publish(self, topic: str, *messages: tuple[str, BaseModel]) -> None:
        self.producer.begin_transaction()
        for key, message in messages:
            self.producer.produce(topic, dumps(message), key=key.encode())
        self.producer.commit_transaction(30)

    def results(self, *results: TaskResult) -> None:
        self.publish(self.topics.results, *[(r.task_id, r) for r in results])


@pytest.fixture
def publisher(settings: Settings) -> Publisher:
    return Publisher(settings)


def result(
    callback_url: str | None,
    status: TaskStatus = TaskStatus.SUCCEEDED,
    project: str = "default",
    **fields: Any,
) -> TaskResult:
    from schemas import new_task_id

    now = utcnow()
    return TaskResult(
        task_id=new_task_id(),
        status=status,
        model="echo",
        action="generate",
        project=project,
        attempts=1,
        created_at=now,
        started_at=now,
        finished_at=now,
        result={"text": "hello"} if status is TaskStatus.SUCCEEDED else None,
        callback_url=callback_url,  # type: ignore[arg-type]
        metadata={"order": 7},
        **fields,
    )
