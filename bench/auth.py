"""Submit throughput with authentication off, with a managed API key, and with a JWT.

Three API processes on the same broker, measured one after the other in the same run (the
unauthenticated one twice, first and last, to show the drift between measurements).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import httpx
import jwt

from bench.loadgen import post_request, run_load
from bench.pipeline import BODY, CONCURRENCY, DURATION_S, _env, _free_port, _start, _stop

BOOT = "bench-bootstrap-admin-key-0123456789"
JWT_SECRET = "bench-jwt-secret-0123456789abcdef0123456789"
WARM_UP_S = float(os.environ.get("BENCH_AUTH_WARM_UP_S", "15"))


def _credential(kind: str, port: int) -> str | None:
    if kind == "key":
        created = httpx.post(
            f"http://127.0.0.1:{port}/v1/keys",
            json={"project": "bench", "role": "developer", "name": "bench"},
            headers={"Authorization": f"Bearer {BOOT}"},
            timeout=30,
        )
        created.raise_for_status()
        return str(created.json()["key"])
    if kind == "jwt":
        claims = {"sub": "bench", "project": "bench", "role": "developer"}
        return jwt.encode({**claims, "exp": int(time.time()) + 3600}, JWT_SECRET)
    return None


def bench_submit(kind: str, warm_up_s: float = 1.0) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    port = _free_port()
    extra = {"AUTOGLM_SERVER__RUN_PROJECTOR": "false"}
    if kind != "off":
        extra |= {
            "AUTOGLM_AUTH__ENABLED": "true",
            "AUTOGLM_AUTH__BOOTSTRAP_ADMIN_KEY": BOOT,
            "AUTOGLM_AUTH__JWT_SECRET": JWT_SECRET,
        }
    proc = _start(
        ["-m", "autoglm", "api", "--port", str(port)], _env(prefix, **extra), port, "/readyz"
    )
    try:
        token = _credential(kind, port)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = post_request("127.0.0.1", port, "/v1/tasks", BODY, headers)
        asyncio.run(run_load("127.0.0.1", port, lambda _: request, CONCURRENCY, warm_up_s))
        result = asyncio.run(
            run_load("127.0.0.1", port, lambda _: request, CONCURRENCY, DURATION_S)
        )
        return result.summary()
    finally:
        _stop(proc)


def run(out: dict[str, Any]) -> None:
    off_first = bench_submit("off", warm_up_s=WARM_UP_S)
    key = bench_submit("key")
    token = bench_submit("jwt")
    off_last = bench_submit("off")
    off_rps = (off_first["throughput_rps"] + off_last["throughput_rps"]) / 2
    for name, result in (("off", off_first), ("key", key), ("jwt", token), ("off", off_last)):
        print(f"submit, auth {name}: {result['throughput_rps']} req/s p50 {result['p50_ms']} ms")
    out["submit_auth"] = {
        "concurrency": CONCURRENCY,
        "duration_s": DURATION_S,
        "auth_off_first": off_first,
        "api_key": key,
        "jwt_hs256": token,
        "auth_off_last": off_last,
        "key_vs_off": round(key["throughput_rps"] / max(off_rps, 1e-9), 3),
        "jwt_vs_off": round(token["throughput_rps"] / max(off_rps, 1e-9), 3),
    }


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["auth"]))
