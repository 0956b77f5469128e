"""Webhooks given up on: list them, send them again (same webhook-id, same body)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.auth import Caller, Permission, require
from api.deps import json_response, services_of
from api.routes.browse import delivery_views, errors
from mcp.task_index import Cursor
from schemas.browse import DeadWebhookPage, RedeliverAnswer, RedeliverRequest

router = APIRouter(prefix="/v1/webhooks/dead", tags=["webhooks"])
REDELIVER_ALL_MAX = 1000
Manager = Annotated[Caller, require(Permission.DLQ_MANAGE)]


@router.get("", response_model=DeadWebhookPage, responses=errors(400, 401, 403, 422, 503))
async def dead_webhooks(
    request: Request,
    caller: Manager,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    """The project's webhooks whose retries ran out, most recent first."""
    services = services_of(request)
    before = None
    if cursor:
        at = Cursor.decode(cursor)
        before = (float(at.score), at.task_id)
    ids, last = await services.webhooks.dead_page(caller.project, limit, before)
    views = [v for v in await delivery_views(services.store.redis, services.store.keys, ids) if v]
    next_cursor = Cursor(repr(last[0]), last[1]).encode() if last else None
    body = DeadWebhookPage(webhooks=views, next_cursor=next_cursor)
    return json_response(200, body.model_dump(mode="json"))


@router.post(
    "/redeliver",
    status_code=202,
    response_model=RedeliverAnswer,
    responses=errors(400, 401, 403, 413, 422, 503),
)
async def redeliver_dead(body: RedeliverRequest, request: Request, caller: Manager) -> Response:
    """Send dead webhooks again: the ones named, or every dead one of the project (up to 1,000).
    Names that are not dead webhooks of the project come back in `not_found`."""
    services = services_of(request)
    project = caller.project
    if body.webhook_ids is None:
        wanted, _ = await services.webhooks.dead_page(project, REDELIVER_ALL_MAX, None)
        dead = set(wanted)
    else:
        wanted = list(dict.fromkeys(body.webhook_ids))
        dead = await services.webhooks.dead_of(project, wanted)
    # Their requests are committed to `webhook-deliveries` first, so a replay restores them.
    redelivered = await services.webhooks.redeliver_webhooks(
        [w for w in wanted if w in dead], services.journal
    )
    answer = RedeliverAnswer(
        redelivered=redelivered, not_found=[w for w in wanted if w not in redelivered]
    )
    return json_response(202, answer.model_dump(mode="json"))
