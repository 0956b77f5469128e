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
    commands = {
        "api": ["api", "--port", str(port)],
        "grpc": ["grpc"],
        "dispatcher": ["dispatcher"],
        **{f"worker-{name}": ["worker", "--model", name] for name in ModelRegistry(settings).specs},
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name, args in commands.items():
        log = open(os.path.join(logs, f"{name}.log"), "ab")  # noqa: SIM115 - lives with the child
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "autoglm", *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )

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
        models = ", ".join(ModelRegistry(settings).specs)
        print(
            HELP.format(port=port, grpc_port=settings.grpc.port, models=models, logs=logs),
            flush=True,
        )
        while all(p.poll() is None for p in procs.values()):
            time.sleep(1)
        dead = [n for n, p in procs.items() if p.poll() is not None]
        print(f"stopped: {', '.join(dead)} exited; see {logs}")
        return 1
    except (KeyboardInterrupt, SystemExit):
        return 0
    finally:
        stop()
