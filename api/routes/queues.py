"""`GET /v1/queues`: per model, the caller's backlog, its oldest queued task, what runs, who runs
it, the Kafka lag, the last minute's completions and queue waits, and the recent rates; read
from Kafka offsets, the task indexes, heartbeats and `mcp.queue_stats`, never by scanning tasks."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.auth import Caller, Permission, require
from api.deps import json_response, services_of
from api.queue_depth import QueueDepth
from api.routes.browse import errors
from mcp import queue_stats
from mcp.heartbeat import list_workers
from schemas.browse import QueuesView, QueueView, Rates, WorkerCounts

router = APIRouter(tags=["system"])


def depth_of(request: Request) -> QueueDepth:
    state = request.app.state
    depth: QueueDepth | None = getattr(state, "queue_depth", None)
    if depth is None:
        depth = state.queue_depth = QueueDepth(services_of(request).settings)
    return depth


def counts(workers: list[dict[str, object]]) -> WorkerCounts:
    states = [w.get("state") for w in workers]
    return WorkerCounts(
        alive=states.count("alive"), suspect=states.count("suspect"), failed=states.count("failed")
    )


@router.get("/v1/queues", response_model=QueuesView, responses=errors(401, 403, 422, 503))
async def queues(
    request: Request,
    caller: Annotated[Caller, require(Permission.QUEUES_READ)],
    window_s: Annotated[int, Query(ge=1, le=3600, description="Window of the rates")] = 10,
) -> Response:
    services = services_of(request)
    project = caller.project
    keys, redis = services.store.keys, services.store.redis
    models = [m["name"] for m in services.registry.describe()]
    now_ms = int(time.time() * 1000)
    since_ms = now_ms - window_s * 1000
    async with redis.pipeline(transaction=False) as pipe:
        for model in models:
            pipe.zcard(keys.index(project, f"sm:queued:{model}"))
            pipe.zrange(keys.index(project, f"sm:queued:{model}"), 0, 0, withscores=True)
            pipe.zcard(keys.index(project, f"sm:running:{model}"))
        for name in ("all", "done:succeeded", "done:failed"):
            pipe.zcount(keys.index(project, name), since_ms, now_ms)
        for model in models:
            for key in queue_stats.window_keys(keys, model, now_ms / 1000):
                pipe.hgetall(key)
        replies = await pipe.execute()
    workers = await list_workers(services.settings, redis)
    lags = await depth_of(request).lags(models, services.partitions)
    per_window = queue_stats.WINDOW_BUCKETS
    windows = replies[3 * len(models) + 3 :]
    views = []
    for i, model in enumerate(models):
        backlog, oldest, running = replies[3 * i : 3 * i + 3]
        window = queue_stats.summarize(windows[i * per_window : (i + 1) * per_window])
        views.append(
            QueueView(
                model=model,
                backlog=int(backlog),
                oldest_queued_age_s=round((now_ms - oldest[0][1]) / 1000, 3) if oldest else None,
                running=int(running),
                workers=counts([w for w in workers if w.get("model") == model]),
                lag=lags.get(model),
                completed_last_minute=window.completed,
                queue_wait_p50_s=window.wait_p50_s,
                queue_wait_p95_s=window.wait_p95_s,
            )
        )
    submitted, succeeded, failed = replies[3 * len(models) : 3 * len(models) + 3]
    rates = Rates(
        window_s=window_s,
        submitted=submitted / window_s,
        succeeded=succeeded / window_s,
        failed=failed / window_s,
    )
    body = QueuesView(queues=views, rates=rates, workers=counts(workers))
    return json_response(200, body.model_dump(mode="json"))
