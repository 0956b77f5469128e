"""Submit throughput with authentication off, with a managed API key, and with a JWT.

One API process per measurement, all on the same broker, in interleaved rounds of the same run.
The credential check itself costs microseconds (a dict lookup and a SHA-256 for a key; a cached
verification for a JWT), so the three should agree within the run-to-run noise.
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


ROUNDS = int(os.environ.get("BENCH_AUTH_ROUNDS", "2"))
KINDS = ("off", "key", "jwt")


def run(out: dict[str, Any]) -> None:
    """`ROUNDS` rounds of off, key, JWT, interleaved so drift on a shared machine hits all three."""
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for round_ in range(ROUNDS):
        for kind in KINDS:
            warm = WARM_UP_S if round_ == 0 and kind == "off" else 1.0
            result = bench_submit(kind, warm_up_s=warm)
            runs[kind].append(result)
            print(
                f"submit, auth {kind}: {result['throughput_rps']} req/s p50 {result['p50_ms']} ms"
            )
    mean = {k: sum(r["throughput_rps"] for r in v) / len(v) for k, v in runs.items()}
    out["submit_auth"] = {
        "concurrency": CONCURRENCY,
        "duration_s": DURATION_S,
        "rounds": ROUNDS,
        "runs": runs,
        "mean_rps": {k: round(v, 1) for k, v in mean.items()},
        "key_vs_off": round(mean["key"] / max(mean["off"], 1e-9), 3),
        "jwt_vs_off": round(mean["jwt"] / max(mean["off"], 1e-9), 3),
    }
    print(f"mean req/s: {out['submit_auth']['mean_rps']}")


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["auth"]))
