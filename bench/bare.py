"""The ceiling: a bare FastAPI endpoint that takes the same body and answers like submit, and
one that answers a poll of a task with the body of `BENCH_BARE_POLL_BODY` (a file)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import orjson
import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response

from schemas import SubmitRequest, TaskLinks, new_task_id, utcnow

app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})


@app.post("/v1/tasks")
async def submit(body: SubmitRequest) -> Response:
    task_id = new_task_id()
    answer = {
        "task_id": task_id,
        "status": "queued",
        "created_at": utcnow().isoformat(),
        "links": TaskLinks.for_task(task_id).model_dump(),
    }
    return Response(orjson.dumps(answer), status_code=202, media_type="application/json")


_POLL_BODY = os.environ.get("BENCH_BARE_POLL_BODY")
POLL_ANSWER = Path(_POLL_BODY).read_bytes() if _POLL_BODY else b"{}"


@app.get("/v1/tasks/{task_id}")
async def poll(task_id: str) -> Response:
    return Response(POLL_ANSWER, media_type="application/json")


if __name__ == "__main__":
    # argv: port [processes]; several processes share the port as `autoglm api --processes` does.
    uvicorn.run(
        "bench.bare:app",
        host="127.0.0.1",
        port=int(sys.argv[1]),
        workers=int(sys.argv[2]) if len(sys.argv) > 2 else None,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
