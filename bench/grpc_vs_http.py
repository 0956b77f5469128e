"""gRPC against HTTP in the same run: submit throughput and `Infer` latency.

One HTTP API process and one `autoglm grpc` process on the same broker and namespace, an echo
worker and a standalone projector (neither front door projects, so both do the same work per
task). Rounds alternate HTTP and gRPC, so drift on a shared machine hits both.

- submit: closed loop, `CONCURRENCY` requests in flight for `DURATION_S`. The HTTP client is
  pre-encoded bytes on raw sockets (`bench.loadgen`); the gRPC client sends pre-serialized
  messages on one grpc.aio channel (no Protobuf work on the client side either).
- infer: `INFER_CALLS` echo tasks one after another, submit -> final view, each side's p50/p90.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import grpc
import httpx

from bench.cpu import cpu_s
from bench.loadgen import LoadResult, post_request, run_load
from bench.pipeline import BODY, CONCURRENCY, DURATION_S, _env, _free_port, _start, _stop
from schemas.autoglm.v1 import service_pb2 as rpc
from schemas.autoglm.v1 import service_pb2_grpc as rpc_grpc

ROUNDS = int(os.environ.get("BENCH_GRPC_ROUNDS", "2"))
INFER_CALLS = int(os.environ.get("BENCH_GRPC_INFER_CALLS", "200"))
WARM_UP_S = float(os.environ.get("BENCH_GRPC_WARM_UP_S", "10"))
SUBMIT_METHOD = "/autoglm.v1.TaskService/Submit"


def _submit_bytes() -> bytes:
    request = rpc.SubmitTaskRequest()
    request.task.model = str(BODY["model"])
    request.task.action = str(BODY["action"])
    request.task.payload.update(BODY["payload"])  # type: ignore[arg-type]
    request.task.metadata.update(BODY["metadata"])  # type: ignore[arg-type]
    return request.SerializeToString()


async def grpc_load(target: str, concurrency: int, duration_s: float) -> LoadResult:
    result = LoadResult()
    raw = _submit_bytes()
    stop_at = time.perf_counter() + duration_s
    async with grpc.aio.insecure_channel(target) as channel:
        # Bytes in, bytes out: no (de)serializer on the client side.
        submit: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(SUBMIT_METHOD)

        async def caller() -> None:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    await submit(raw, timeout=30)
                    status = 200
                except grpc.aio.AioRpcError as exc:
                    status = 503 if exc.code() == grpc.StatusCode.UNAVAILABLE else 500
                result.latencies_ms.append((time.perf_counter() - t0) * 1000)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.sent += 1

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
    return result


def _with_cpu(result: LoadResult, server_pid: int, cpu_before: float) -> dict[str, Any]:
    """The load's summary and the server's CPU time per request (steadier than wall time on a
    shared machine, and free of the client's own cost)."""
    cpu_ms = (cpu_s(server_pid) - cpu_before) * 1000 / max(1, result.sent)
    return {**result.summary(), "server_cpu_ms_per_submit": round(cpu_ms, 3)}


def http_submit(port: int, pid: int, duration_s: float) -> dict[str, Any]:
    request = post_request("127.0.0.1", port, "/v1/tasks", BODY)
    before = cpu_s(pid)
    result = asyncio.run(run_load("127.0.0.1", port, lambda _: request, CONCURRENCY, duration_s))
    return _with_cpu(result, pid, before)


def grpc_submit(target: str, pid: int, duration_s: float) -> dict[str, Any]:
    before = cpu_s(pid)
    return _with_cpu(asyncio.run(grpc_load(target, CONCURRENCY, duration_s)), pid, before)


def _latencies(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)

    return {"calls": len(ordered), "p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99)}


def http_infer(port: int) -> dict[str, Any]:
    samples = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        for i in range(INFER_CALLS):
            body = {**BODY, "payload": {"prompt": f"infer {i}"}}
            t0 = time.perf_counter()
            answer = client.post("/v1/infer", json=body, headers={"Prefer": "wait=30"})
            samples.append((time.perf_counter() - t0) * 1000)
            assert answer.status_code == 200, answer.text
    return _latencies(samples)


def grpc_infer(target: str) -> dict[str, Any]:
    samples = []
    with grpc.insecure_channel(target) as channel:
        stub = rpc_grpc.TaskServiceStub(channel)
        for i in range(INFER_CALLS):
            request = rpc.InferRequest(wait_s=30)
            request.submit.task.model = "echo"
            request.submit.task.action = "generate"
            request.submit.task.payload.update({"prompt": f"infer {i}"})
            t0 = time.perf_counter()
            answer = stub.Infer(request, timeout=60)
            samples.append((time.perf_counter() - t0) * 1000)
            assert answer.done, answer
    return _latencies(samples)


def _wait_worker(port: int) -> None:
    """Until an echo task comes back through the whole pipeline: a fresh worker joins its
    consumer group and gets its partitions before it answers anything, and a backlog left by
    the submit rounds is worked off first."""
    deadline = time.monotonic() + 180
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        while True:
            answer = client.post("/v1/infer", json=BODY, headers={"Prefer": "wait=30"})
            if answer.status_code == 200:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the echo worker never answered: {answer.text}")


def _wait_grpc(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=180)
        stub = rpc_grpc.TaskServiceStub(channel)
        deadline = time.monotonic() + 180
        while True:  # ready once a submission goes through (topics made, producer up)
            try:
                stub.Submit(rpc.SubmitTaskRequest(task=_warm_task()), timeout=30)
                return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def _warm_task() -> Any:
    request = rpc.SubmitTaskRequest()
    request.ParseFromString(_submit_bytes())
    return request.task


def run(out: dict[str, Any]) -> None:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    env = _env(prefix, AUTOGLM_SERVER__RUN_PROJECTOR="false")
    port, grpc_port = _free_port(), _free_port()
    target = f"127.0.0.1:{grpc_port}"
    procs = [
        _start(["-m", "autoglm", "api", "--port", str(port)], env, port, "/readyz"),
        _start(["-m", "autoglm", "grpc", "--port", str(grpc_port)], env, None, ""),
        _start(["-m", "autoglm", "projector"], env, None, ""),
        _start(["-m", "autoglm", "worker", "--model", "echo"], env, None, ""),
    ]
    try:
        _wait_grpc(target)
        _wait_worker(port)
        api, front = procs[0].pid, procs[1].pid
        http_submit(port, api, WARM_UP_S)
        grpc_submit(target, front, WARM_UP_S)
        rounds: dict[str, list[dict[str, Any]]] = {
            "http_submit": [],
            "grpc_submit": [],
            "http_infer": [],
            "grpc_infer": [],
        }
        for _ in range(ROUNDS):
            rounds["http_submit"].append(http_submit(port, api, DURATION_S))
            rounds["grpc_submit"].append(grpc_submit(target, front, DURATION_S))
            _wait_worker(port)  # the submit rounds left a backlog: infer waits behind none
            rounds["http_infer"].append(http_infer(port))
            rounds["grpc_infer"].append(grpc_infer(target))
            for name, runs in rounds.items():
                print(f"{name}: {runs[-1]}", flush=True)
    finally:
        for proc in reversed(procs):
            _stop(proc)

    def mean(name: str, key: str) -> float:
        return round(sum(float(r[key]) for r in rounds[name]) / len(rounds[name]), 2)

    out["grpc_vs_http"] = {
        "concurrency": CONCURRENCY,
        "duration_s": DURATION_S,
        "rounds": ROUNDS,
        "infer_calls": INFER_CALLS,
        "runs": rounds,
        "submit_rps": {
            "http": mean("http_submit", "throughput_rps"),
            "grpc": mean("grpc_submit", "throughput_rps"),
        },
        "server_cpu_ms_per_submit": {
            "http": mean("http_submit", "server_cpu_ms_per_submit"),
            "grpc": mean("grpc_submit", "server_cpu_ms_per_submit"),
        },
        "infer_p50_ms": {
            "http": mean("http_infer", "p50_ms"),
            "grpc": mean("grpc_infer", "p50_ms"),
        },
        "infer_p90_ms": {
            "http": mean("http_infer", "p90_ms"),
            "grpc": mean("grpc_infer", "p90_ms"),
        },
    }
    print(f"grpc vs http: {out['grpc_vs_http']}", flush=True)


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["grpc_vs_http"]))
