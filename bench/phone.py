"""phone_step with a phone-sized screenshot: the ways to send it, against a small submission.

For a 1080x2400 PNG of about 2.8 MB, each way is measured in the same run:
- small: a phone_step whose screenshot is a few hundred bytes (the baseline);
- base64: the screenshot inline in JSON;
- multipart: a `task` JSON part and a `screenshot` file part;
- files: `POST /v1/files`, then a submission that refers to the file (both count as one);
- protobuf: `autoglm.v1.SubmitRequest` with the raw bytes in `files`.
Per way: closed-loop submit throughput and latency, the largest Kafka record it produced, and
the end-to-end latency (submit sent -> terminal event committed) at a fixed rate through the
echo model, which fetches the screenshot and stores its large result as a file.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from PIL import Image

from bench.cpu import cpu_s
from bench.events import TerminalEvents
from bench.loadgen import LoadResult, _read_response
from bench.pipeline import KAFKA, _env, _free_port, _start, _stop
from mcp.names import Topics
from mcp.settings import Settings
from schemas import SubmitRequest
from schemas.autoglm.v1 import messages_pb2 as pb
from schemas.protobuf import to_protobuf
from tests.harness import scan
from tests.screens import phone_png

CONCURRENCY = int(os.environ.get("BENCH_PHONE_CONCURRENCY", "8"))
DURATION_S = float(os.environ.get("BENCH_PHONE_DURATION_S", "5"))
E2E_RATE = float(os.environ.get("BENCH_PHONE_E2E_RATE", "4"))
WARM_S = float(os.environ.get("BENCH_PHONE_WARM_S", "1.5"))
WAYS = ("small", "base64", "multipart", "files", "protobuf")
TASK = {"model": "echo", "action": "phone_step", "payload": {"instruction": "Share the photo"}}
BOUNDARY = "autoglm-bench-boundary"

# A request step: given the answer to the previous step (None first), the next request bytes,
# or None when this submission is complete.
Step = Callable[[bytes | None], bytes | None]


def _http(port: int, path: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (108, 240), (240, 240, 240)).save(buffer, format="PNG")
    return buffer.getvalue()


def _json_with(screenshot: object) -> bytes:
    payload = {**TASK["payload"], "screenshot": screenshot}  # type: ignore[dict-item]
    return orjson.dumps({**TASK, "payload": payload})


def _multipart(png: bytes) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="task"\r\n'
        "Content-Type: application/json\r\n\r\n".encode()
        + orjson.dumps(TASK)
        + b"\r\n",
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="screenshot"; '
        'filename="screen.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
        + png
        + b"\r\n",
        f"--{BOUNDARY}--\r\n".encode(),
    ]
    return b"".join(parts)


def _protobuf(png: bytes) -> bytes:
    message = to_protobuf(SubmitRequest.model_validate(TASK))
    assert isinstance(message, pb.SubmitRequest)
    message.files["screenshot"] = png
    return message.SerializeToString()


def steps_for(way: str, port: int, png: bytes) -> Callable[[], Step]:
    """A fresh step function per submission of `way`."""
    fixed = {
        "small": _http(port, "/v1/tasks", _json_with(base64.b64encode(_small_png()).decode()), J),
        "base64": _http(port, "/v1/tasks", _json_with(base64.b64encode(png).decode()), J),
        "multipart": _http(
            port, "/v1/tasks", _multipart(png), f"multipart/form-data; boundary={BOUNDARY}"
        ),
        "protobuf": _http(port, "/v1/tasks", _protobuf(png), "application/x-protobuf"),
    }
    if way in fixed:
        request = fixed[way]
        return lambda: _once(request)
    upload = _http(port, "/v1/files", png, "image/png")

    def files() -> Step:
        def step(previous: bytes | None) -> bytes | None:
            if previous is None:
                return upload
            answer = orjson.loads(previous)
            if "id" not in answer:  # the submission's own answer: done
                return None
            body = _json_with({"file_id": answer["id"]})
            return _http(port, "/v1/tasks", body, J)

        return step

    return files


J = "application/json"


def _once(request: bytes) -> Step:
    return lambda previous: request if previous is None else None


async def _submit(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, step: Step
) -> tuple[int, bytes]:
    status, body = 0, b""
    previous: bytes | None = None
    while (request := step(previous)) is not None:
        writer.write(request)
        status, body = await _read_response(reader)
        if status >= 300:
            return status, body
        previous = body
    return status, body


async def closed_loop(port: int, make: Callable[[], Step], duration_s: float) -> LoadResult:
    result = LoadResult()
    stop_at = time.perf_counter() + duration_s

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                status, _ = await _submit(reader, writer, make())
                result.latencies_ms.append((time.perf_counter() - t0) * 1000)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.sent += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(CONCURRENCY)))
    result.seconds = time.perf_counter() - started
    return result


async def open_loop(
    port: int, make: Callable[[], Step], rate: float, duration_s: float, sent: dict[str, float]
) -> None:
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(4):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    started = time.perf_counter()

    async def one() -> None:
        reader, writer = await pool.get()
        t0 = time.perf_counter()
        status, body = await _submit(reader, writer, make())
        pool.put_nowait((reader, writer))
        if status == 202:
            sent[_task_id(body)] = t0

    tasks: list[Awaitable[None]] = []
    for i in range(int(rate * duration_s)):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait()[1].close()


def _task_id(answer: bytes) -> str:
    """The task id of a submit answer: JSON, or Protobuf for a Protobuf submission."""
    if answer.startswith(b"{"):
        task_id: str = orjson.loads(answer)["task_id"]
        return task_id
    return pb.SubmitResponse.FromString(answer).task_id


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1) if ordered else -1.0


def _largest(settings: Settings, topic: str, task_ids: set[str]) -> int:
    """The largest record value of these tasks in a topic."""
    records = scan(settings, topic)
    return max((len(v or b"") for k, v, _ in records if (k or b"").decode() in task_ids), default=0)


def run(out: dict[str, Any]) -> None:
    png = phone_png()
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    blobs = Path(tempfile.mkdtemp(prefix="autoglm-bench-blobs-"))
    port = _free_port()
    env = _env(prefix, AUTOGLM_BLOBS__PATH=str(blobs))
    settings = Settings(kafka={"bootstrap_servers": KAFKA, "topic_prefix": prefix})
    api = _start(["-m", "autoglm", "api", "--port", str(port)], env, port, "/readyz")
    worker = _start(["-m", "autoglm", "worker", "--model", "echo"], env, None, "")
    finished = TerminalEvents(settings, f"{settings.kafka.topic_prefix}watch", time.perf_counter)
    topics = Topics.of(settings)
    results: dict[str, Any] = {"screenshot_bytes": len(png), "concurrency": CONCURRENCY}
    # Others' work on the host skews every number: say how busy it was.
    results["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    accepted = 0

    def drained() -> None:
        """Wait until every accepted task has finished: no backlog in the next measurement."""
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(finished.at) < accepted:
            time.sleep(0.1)

    try:
        time.sleep(3)  # the worker and the watcher have joined their groups
        warm = asyncio.run(closed_loop(port, steps_for("small", port, png), 10.0))
        accepted += warm.statuses.get(202, 0)  # broker and API warm-up
        drained()
        for way in WAYS:
            make = steps_for(way, port, png)
            # A first submission of a way pays one-time costs (imports, the first file of the
            # store, thread pools); a short unmeasured round keeps them out of its numbers.
            warm = asyncio.run(closed_loop(port, make, WARM_S))
            accepted += warm.statuses.get(202, 0)
            drained()
            cpu_before = cpu_s(api.pid)
            loaded = asyncio.run(closed_loop(port, make, DURATION_S))
            api_cpu_ms = (cpu_s(api.pid) - cpu_before) * 1000 / max(1, loaded.sent)
            accepted += loaded.statuses.get(202, 0)
            load = {**loaded.summary(), "api_cpu_ms_per_submit": round(api_cpu_ms, 2)}
            drained()
            sent: dict[str, float] = {}
            asyncio.run(open_loop(port, make, E2E_RATE, DURATION_S, sent))
            accepted += len(sent)
            drained()
            e2e = [(finished.at[t] - t0) * 1000 for t, t0 in sent.items() if t in finished.at]
            task_max = _largest(settings, topics.tasks("echo"), set(sent))
            event_max = _largest(settings, topics.events, set(sent))
            results[way] = {
                "submit": load,
                "largest_task_record_bytes": task_max,
                "largest_event_record_bytes": event_max,
                "e2e": {
                    "rate_per_s": E2E_RATE,
                    "tasks": len(sent),
                    "completed": len(e2e),
                    "p50_ms": _pct(e2e, 0.5),
                    "p99_ms": _pct(e2e, 0.99),
                },
            }
            print(
                f"{way:>9}: {load['throughput_rps']} submits/s p50 {load['p50_ms']} ms"
                f" (API CPU {api_cpu_ms:.1f} ms each)"
                f" p99 {load['p99_ms']} ms; largest task record {task_max} B;"
                f" e2e p50 {_pct(e2e, 0.5)} ms p99 {_pct(e2e, 0.99)} ms",
                flush=True,
            )
    finally:
        finished.stop()
        _stop(worker)
        _stop(api)
        shutil.rmtree(blobs, ignore_errors=True)
    results["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    small = results["small"]["submit"]["throughput_rps"] or 1e-9
    for way in WAYS[1:]:
        results[way]["throughput_vs_small"] = round(
            results[way]["submit"]["throughput_rps"] / small, 3
        )
    out["phone_step_2_8MB"] = results


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["phone"]))
