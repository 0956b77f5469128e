"""`autoglm dev`: the whole platform on this machine, in one terminal.

Kafka and Redis are started by `make dev` (deploy/kafka/kafka.sh, deploy/redis.sh); this
starts the API, one worker per built-in model and the webhook dispatcher, prints how to submit
a task, and stops them all on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from mcp.kafka import ensure_topics
from mcp.registry import ModelRegistry
from mcp.settings import Settings

HELP = """
autoglm-mcp is up.
  API        http://127.0.0.1:{port}   (docs: http://127.0.0.1:{port}/docs)
  gRPC       127.0.0.1:{grpc_port}   (grpcurl -plaintext 127.0.0.1:{grpc_port} list)
  models     {models}
  logs       {logs}
  metrics    {metrics}

Submit a task, then poll it:
  curl -s -XPOST http://127.0.0.1:{port}/v1/tasks -H 'content-type: application/json' \\
       -d '{{"model": "glm-tiny", "action": "generate",
             "payload": {{"prompt": "Hello", "max_tokens": 16}}}}'
  curl -s http://127.0.0.1:{port}/v1/tasks/<task_id>
  curl -sN http://127.0.0.1:{port}/v1/tasks/<task_id>/stream        # tokens as Server-Sent Events

Or wait for the answer in one call:
  curl -s -XPOST http://127.0.0.1:{port}/v1/infer -H 'Prefer: wait=10' \\
       -H 'content-type: application/json' \\
       -d '{{"model": "echo", "action": "generate", "payload": {{"prompt": "hi"}}}}'

Ctrl-C stops the API, gRPC, workers and dispatcher; `make down` stops Kafka and Redis.
"""


class Child:
    """One process of the platform, restarted when it dies: after 1 s, doubling up to 30 s
    while it keeps dying within a minute of its start."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: str) -> None:
        self.name, self.args, self.env, self.logs = name, args, env, logs
        self.backoff_s = 1.0
        self.started_at = 0.0
        self.restart_at: float | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        log = open(os.path.join(self.logs, f"{self.name}.log"), "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "autoglm", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Not in the terminal's process group: Ctrl-C reaches this supervisor alone, which
            # stops each child with one SIGTERM (a worker takes a second signal as "exit now").
            start_new_session=True,
        )
        self.started_at = time.monotonic()
        self.restart_at = None
        return self.proc

    def watch(self) -> subprocess.Popen[bytes]:
        """The running process, started again once its back-off has passed."""
        assert self.proc is not None
        code = self.proc.poll()
        if code is None:
            return self.proc
        now = time.monotonic()
        if self.restart_at is None:
            if now - self.started_at > 60:
                self.backoff_s = 1.0
            self.restart_at = now + self.backoff_s
            print(
                f"{self.name} exited with status {code}; restarting in {self.backoff_s:g} s "
                f"(log: {self.logs}/{self.name}.log)",
                flush=True,
            )
            self.backoff_s = min(30.0, self.backoff_s * 2)
        if now >= self.restart_at:
            return self.start()
        return self.proc


def run(kafka: str, redis: str, port: int) -> int:
    env = dict(os.environ)
    env.setdefault("AUTOGLM_DEV_MODE", "true")
    env["AUTOGLM_KAFKA__BOOTSTRAP_SERVERS"] = kafka
    env["AUTOGLM_REDIS__URL"] = redis
    os.environ.update(env)
    settings = Settings()
    ensure_topics(settings)
    logs = os.path.join(settings.cache_dir, "dev-logs")
    os.makedirs(logs, exist_ok=True)
    models = list(ModelRegistry(settings).specs)
    commands = {
        "api": ["api", "--port", str(port)],
        "grpc": ["grpc"],
        "dispatcher": ["dispatcher", "--metrics-port", str(port + 102)],
        **{
            f"worker-{name}": ["worker", "--model", name, "--metrics-port", str(port + 110 + i)]
            for i, name in enumerate(models)
        },
    }
    metrics = [f"api :{port}/metrics", f"dispatcher :{port + 102}/metrics"]
    metrics += [f"{name} :{port + 110 + i}/metrics" for i, name in enumerate(models)]
    children = {name: Child(name, args, env, logs) for name, args in commands.items()}
    procs = {name: child.start() for name, child in children.items()}

    def stop(*_: object) -> None:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()

    # Explicit handlers: a shell may start us with SIGINT ignored, and Ctrl-C must still work.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(0))  # the terminal closed
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if procs["api"].poll() is not None:
                print(f"the API exited; see {logs}/api.log")
                return 1
            time.sleep(0.3)
        print(
            HELP.format(
                port=port,
                grpc_port=settings.grpc.port,
                models=", ".join(models),
                logs=logs,
                metrics=", ".join(metrics),
            ),
            flush=True,
        )
        while True:  # a child that dies is started again, after a back-off
            for name, child in children.items():
                procs[name] = child.watch()
            time.sleep(0.5)
    except (KeyboardInterrupt, SystemExit):
        return 0
    finally:
        stop()
