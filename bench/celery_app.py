"""The Celery baseline's application: what teams build today for async inference.

Celery 5 with a Redis broker and result backend, one echo task; `bench.celery_api` puts it
behind FastAPI (`POST` -> `.delay()` -> 202 with the id, `GET` -> `AsyncResult`).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

REDIS = os.environ.get("BENCH_CELERY_REDIS", "redis://127.0.0.1:6379/1")

app = Celery("bench", broker=REDIS, backend=REDIS)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_track_started=True,  # so a poll sees `running`, as ours does
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.echo")  # type: ignore[untyped-decorator]
def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return {"output": payload}
