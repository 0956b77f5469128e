"""Container health check of an autoglm process: exit 0 when healthy, 1 when not.

The role is read from the container's main process (`/proc/1/cmdline`) or from the arguments
(`healthcheck.py worker --model echo --slot 0`):
- api: `GET /healthz` on its port answers 200;
- worker: its heartbeat in Redis (`<prefix>worker:<model>.<slot>`) is younger than three beats;
- dispatcher and the rest: the main process is running (it exits on a fatal error).
Used by the image's HEALTHCHECK and the Helm chart's worker liveness probe.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request
from pathlib import Path


def command_line(argv: list[str]) -> list[str]:
    if argv:
        return argv
    raw = Path("/proc/1/cmdline").read_bytes()
    return [part.decode() for part in raw.split(b"\0") if part]


def role_args(cmdline: list[str]) -> tuple[str, argparse.Namespace]:
    roles = ("api", "worker", "dispatcher", "projector", "replay")
    role = next((part for part in cmdline if part in roles), "")
    rest = cmdline[cmdline.index(role) + 1 :] if role else []
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model", default=None)
    parser.add_argument("--slot", default="0")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--host", default=None)
    args, _ = parser.parse_known_args(rest)
    return role, args


def api_healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=4) as response:
            return int(response.status) == 200
    except OSError:
        return False


def worker_healthy(model: str, slot: str) -> bool:
    import orjson
    import redis

    from mcp.names import Keys
    from mcp.settings import get_settings

    settings = get_settings()
    client = redis.Redis.from_url(settings.redis.url, socket_timeout=4, socket_connect_timeout=4)
    try:
        raw = client.get(Keys.of(settings).worker(f"{model}.{slot}"))
    except redis.RedisError:
        return False
    finally:
        client.close()
    if raw is None:
        return False
    body = orjson.loads(raw)
    return time.time() - float(body["beat_at"]) < 3 * float(body["interval_s"])


def main(argv: list[str]) -> int:
    role, args = role_args(command_line(argv))
    if role == "api":
        from mcp.settings import get_settings

        port = args.port or get_settings().server.port
        healthy = api_healthy(port)
    elif role == "worker" and args.model:
        healthy = worker_healthy(args.model, args.slot)
    else:
        healthy = True  # the container lives exactly as long as its main process
    print(f"{role or 'autoglm'}: {'healthy' if healthy else 'unhealthy'}")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
