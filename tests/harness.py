"""Real processes for integration tests: API, workers and dispatcher, killable with SIGKILL."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from mcp.names import Topics
from mcp.records import decode_value
from mcp.settings import Settings
from schemas import TaskResult

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment that makes a child process use exactly these settings."""
    return {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1", **extra}


class Proc:
    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        log_dir: Path,
        module: str = "autoglm",
    ) -> None:
        self.name = name
        self.args = args
        self.module = module
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up, no goodbye, exactly like a crash."""
        if self.popen is not None and self.alive:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def terminate(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait; past `timeout`, the stacks of its threads go to its log (SIGUSR1,
        `mcp.telemetry.logs.configure_logging`) before a SIGKILL, so a stop that hangs shows
        where."""
        if self.popen is None:
            return None
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.send_signal(signal.SIGUSR1)
                time.sleep(1.0)
                self.kill()
        return self.popen.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Platform:
    """The API, workers and dispatcher of one test, on a namespace of their own."""

    def __init__(self, settings: Settings, log_dir: Path, **env: str) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.env = settings_env(settings, **env)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_port = 0
        self.grpc_target = ""
        self.procs: list[Proc] = []
        self.variants: list[Platform] = []
        self._count = 0

    def variant(self, **sections: dict[str, Any]) -> Platform:
        """A platform on the same namespace with some settings sections changed, stopped with
        this one: `variant(redis={"url": ...})`."""
        updates = {
            name: getattr(self.settings, name).model_copy(update=changes)
            for name, changes in sections.items()
        }
        child = Platform(self.settings.model_copy(update=updates), self.log_dir)
        self.variants.append(child)
        return child

    def _proc(self, name: str, args: list[str], **env: str) -> Proc:
        self._count += 1
        proc = Proc(f"{self._count:02d}-{name}", args, {**self.env, **env}, self.log_dir)
        self.procs.append(proc)
        return proc.start()

    def api(self, probe: str | None = "/readyz", **env: str) -> Proc:
        """Start the API and wait until `probe` answers 200 (not at all when `probe` is None)."""
        proc = self._proc("api", ["api", "--port", str(self.port)], **env)
        if probe is not None:
            self.wait_ready(proc, probe=probe)
        return proc

    def grpc(self, serving: bool = True, **env: str) -> Proc:
        """`autoglm grpc` on a port of its own (`grpc_target`); waits for the health service
        to answer SERVING, or with `serving=False` only for the server to listen."""
        self.grpc_port = free_port()
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        proc = self._proc("grpc", ["grpc", "--port", str(self.grpc_port)], **env)
        wait_for(lambda: "gRPC serving" in proc.log() or not proc.alive, 60, "gRPC listening")
        assert proc.alive, proc.log()
        if serving:
            wait_for(lambda: self._serving(proc), 60, "gRPC serving")
        return proc

    def _serving(self, proc: Proc) -> bool:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        if not proc.alive:
            raise AssertionError(f"{proc.name} exited:\n{proc.log()}")
        with grpc.insecure_channel(self.grpc_target) as channel:
            health: Any = health_pb2_grpc.HealthStub(channel)  # its stub types lack Check
            try:
                answer = health.Check(health_pb2.HealthCheckRequest(), timeout=2)
            except grpc.RpcError:
                return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    def worker(self, model: str = "echo", slot: str = "0", *extra: str, **env: str) -> Proc:
        proc = self._proc(
            f"worker-{model}-{slot}", ["worker", "--model", model, "--slot", slot, *extra], **env
        )
        wait_for(lambda: "ready" in proc.log() or not proc.alive, 120, f"worker {model}")
        assert proc.alive, proc.log()
        return proc

    def dispatcher(self, slot: str = "0", **env: str) -> Proc:
        return self._proc(f"dispatcher-{slot}", ["dispatcher", "--slot", slot], **env)

    def wait_ready(self, proc: Proc, timeout: float = 60, probe: str = "/readyz") -> None:
        def ready() -> bool:
            if not proc.alive:
                raise AssertionError(f"{proc.name} exited:\n{proc.log()}")
            try:
                return httpx.get(f"{self.url}{probe}", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout, "API ready")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def all_procs(self) -> list[Proc]:
        """This platform's processes and its variants'."""
        return [*self.procs, *(p for child in self.variants for p in child.all_procs())]

    def stop(self) -> None:
        for child in self.variants:
            child.stop()
        for proc in reversed(self.procs):
            proc.kill()


class PrivateRedis:
    """A redis-server of this test's own, so that it can be killed."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not on PATH (make test installs it)"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        wait_for(lambda: _pings(client), 10, "private redis")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)


class PrivateKafka:
    """A broker of this test's own, on its own port and data directory, so it can be killed."""

    def __init__(self, data: Path) -> None:
        self.port = _port_pair()
        self.data = data
        self.bootstrap = f"127.0.0.1:{self.port}"

    def _script(self, command: str) -> None:
        subprocess.run(
            [
                str(ROOT / "deploy" / "kafka" / "kafka.sh"),
                command,
                "--port",
                str(self.port),
                "--data",
                str(self.data),
            ],
            check=True,
            capture_output=True,
        )

    def up(self) -> None:
        self._script("up")

    def kill(self) -> None:
        pid = int((self.data / "kafka.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not _alive(pid), 30, "the broker to die")

    def down(self) -> None:
        self._script("down")


def _port_pair() -> int:
    """A port P with P + 1 (the controller's) also free, below the kernel's ephemeral range:
    there no outgoing connection takes P + 1 in the meantime, nor P while the broker restarts."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(20000, low - 2)
        if _bindable(port) and _bindable(port + 1):
            return port
    raise AssertionError("no free port pair below the ephemeral range")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def wait_for(check: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_statuses(
    client: httpx.Client, task_ids: Iterable[str], statuses: set[str], timeout: float = 120
) -> dict[str, dict[str, Any]]:
    """Poll until every task has one of `statuses`; returns the last poll bodies."""
    remaining = set(task_ids)
    seen: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while remaining and time.monotonic() < deadline:
        for task_id in list(remaining):
            response = client.get(f"/v1/tasks/{task_id}")
            if response.status_code == 200:
                body = response.json()
                seen[task_id] = body
                if body["status"] in statuses:
                    remaining.discard(task_id)
        if remaining:
            time.sleep(0.1)
    assert not remaining, f"{len(remaining)} task(s) never reached {statuses}: " + str(
        {t: seen.get(t, {}).get("status") for t in list(remaining)[:5]}
    )
    return seen


def scan(
    settings: Settings, topic: str, idle_s: float = 2.0
) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    """Every committed record of a topic, read_committed, from the beginning to the end."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"scan-{time.monotonic_ns()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    metadata = consumer.list_topics(topic, timeout=30)
    partitions = list(metadata.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    out: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + 120
    while len(at_end) < len(partitions) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        error = msg.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                at_end.add(msg.partition() or 0)
            continue
        at_end.discard(msg.partition() or 0)
        headers = [(str(h[0]), _bytes(h[1])) for h in msg.headers() or []]
        out.append((msg.key(), msg.value() or b"", headers))
    consumer.close()
    return out


def _bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value or "").encode()


def committed_results(settings: Settings) -> list[TaskResult]:
    records = scan(settings, Topics.of(settings).results)
    return [decode_value(TaskResult, value, headers) for _, value, headers in records]


def submit(client: httpx.Client, body: dict[str, Any], **headers: str) -> httpx.Response:
    return client.post(
        "/v1/tasks",
        content=orjson.dumps(body),
        headers={"content-type": "application/json", **headers},
    )


def submit_echo(client: httpx.Client, count: int, **payload: Any) -> list[str]:
    """Submit `count` echo tasks with payloads `{"n": i, **payload}`; their task ids in order."""
    body = {"model": "echo", "action": "generate"}
    return [
        submit(client, {**body, "payload": {"n": i, **payload}}).json()["task_id"]
        for i in range(count)
    ]
