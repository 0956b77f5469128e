"""Polls of one task: `GET /v1/tasks/{id}` of a finished echo task, closed loop, against a bare
FastAPI endpoint (`bench.bare`) answering the very bytes our API answered, in interleaved rounds
of the same run. What a poll costs the API process, and how many one process answers.

    python -m bench poll     # writes bench/results/poll.json
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, cast

import httpx

from bench.loadgen import get_request
from bench.pipeline import (
    BODY,
    CONCURRENCY,
    DURATION_S,
    _closed_loop,
    _env,
    _free_port,
    _start,
    _stop,
)
from schemas import TERMINAL_STATUSES

ROUNDS = int(os.environ.get("BENCH_POLL_ROUNDS", "3"))


def _finished_task(port: int, most_s: float = 120.0) -> tuple[str, bytes]:
    """A task the echo worker has finished, and the API's answer to a poll of it."""
    base = f"http://127.0.0.1:{port}"
    body = {**BODY, "payload": {**cast(dict[str, Any], BODY["payload"]), "stream": False}}
    deadline = time.monotonic() + most_s
    with httpx.Client(base_url=base, timeout=40) as client:
        task_id = client.post("/v1/tasks", json=body).raise_for_status().json()["task_id"]
        while time.monotonic() < deadline:  # the worker may still be joining its group
            answer = client.get(f"/v1/tasks/{task_id}", params={"wait": 30})
            if answer.json().get("status") in TERMINAL_STATUSES:
                return task_id, client.get(f"/v1/tasks/{task_id}").raise_for_status().content
    raise RuntimeError("the echo worker finished no task")


def _round(port: int, pid: int, path: str) -> dict[str, Any]:
    request = get_request("127.0.0.1", port, path)
    return _closed_loop(port, server=pid, request=request)


def run(out: dict[str, Any]) -> None:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    port = _free_port()
    api = _start(["-m", "autoglm", "api", "--port", str(port)], _env(prefix), port, "/readyz")
    bare = None
    try:
        worker = _start(["-m", "autoglm", "worker", "--model", "echo"], _env(prefix), None, "")
        try:
            task_id, answer = _finished_task(port)
        finally:
            _stop(worker)  # nothing else runs while the polls are measured
        with tempfile.TemporaryDirectory() as scratch:
            body_file = Path(scratch) / "answer.json"
            body_file.write_bytes(answer)
            bare_port = _free_port()
            bare_env = {**os.environ, "BENCH_BARE_POLL_BODY": str(body_file)}
            bare = _start(["-m", "bench.bare", str(bare_port)], bare_env, bare_port, "/docs")
            path = f"/v1/tasks/{task_id}"
            rounds = []
            for _ in range(ROUNDS):
                ours = _round(port, api.pid, path)
                baseline = _round(bare_port, bare.pid, path)
                ratio = round(ours["throughput_rps"] / max(baseline["throughput_rps"], 1e-9), 3)
                rounds.append({"autoglm": ours, "bare_fastapi": baseline, "ratio_vs_bare": ratio})
                print(
                    f"poll: autoglm {ours['throughput_rps']} req/s "
                    f"({ours['cpu_us_per_request']['server']} us of API CPU a poll, Redis "
                    f"{ours['cpu_us_per_request'].get('redis')}), bare "
                    f"{baseline['throughput_rps']} req/s "
                    f"({baseline['cpu_us_per_request']['server']} us): {ratio}x",
                    flush=True,
                )
    finally:
        if bare is not None:
            _stop(bare)
        _stop(api)
    out["poll"] = {
        "concurrency": CONCURRENCY,
        "duration_s": DURATION_S,
        "answer_bytes": len(answer),
        "rounds": rounds,
        "note": "GET /v1/tasks/{id} of a finished echo task, closed loop; each round measures "
        "our API (one process, its task read from Redis) and then a bare FastAPI endpoint "
        "answering the same bytes from memory; cpu_us_per_request: CPU time each process "
        "used during the window over the requests answered",
    }


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["poll"]))
