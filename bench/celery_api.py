"""The Celery baseline's HTTP front: a FastAPI app with the same routes and body as ours
(`GET /v1/tasks/{id}?wait=N` included)."""

from __future__ import annotations

import contextlib
import sys

import orjson
import uvicorn
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from bench.celery_app import app as celery_app
from bench.celery_app import echo
from schemas import SubmitRequest, utcnow

app = FastAPI()
STATES = {
    "PENDING": "queued",
    "RECEIVED": "queued",
    "STARTED": "running",
    "RETRY": "queued",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "REVOKED": "cancelled",
}


@app.post("/v1/tasks")
async def submit(body: SubmitRequest) -> Response:
    result = echo.delay(body.payload)
    answer = {"task_id": result.id, "status": "queued", "created_at": utcnow().isoformat()}
    return Response(orjson.dumps(answer), status_code=202, media_type="application/json")


def _wait(result: AsyncResult, wait_s: float) -> None:
    """Celery's own wait for a result: its Redis backend subscribes to the task's key."""
    with contextlib.suppress(CeleryTimeout):
        result.get(timeout=wait_s, propagate=False)


@app.get("/v1/tasks/{task_id}")
async def get_task(task_id: str, wait: float = 0) -> Response:
    """The task's state; `wait` > 0: once it is ready or after `wait` seconds (long poll, as
    ours), through `AsyncResult.get` in the thread pool (Celery's backends are thread-local)."""
    result = AsyncResult(task_id, app=celery_app)
    if wait > 0:
        await run_in_threadpool(_wait, result, wait)
    state = result.state
    answer = {
        "task_id": task_id,
        "status": STATES.get(state, state.lower()),
        "result": result.result if state == "SUCCESS" else None,
    }
    return Response(orjson.dumps(answer), status_code=200, media_type="application/json")


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
