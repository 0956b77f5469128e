"""The caller's webhook signing secrets: read them, rotate them (the old secret keeps signing
for an overlap, so receivers can switch without losing a webhook)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.auth import Caller, Permission, require
from api.contract import REF_TEMPLATE, errors
from api.deps import json_response, services_of
from api.errors import parse_body
from mcp.webhooks.secrets import SigningSecret
from schemas import RotateRequest
from schemas.task import Frozen, utcnow

router = APIRouter(prefix="/v1/webhooks/secret", tags=["webhooks"])
SecretHolder = Annotated[Caller, require(Permission.WEBHOOK_SECRET)]


class WebhookSecretsView(Frozen):
    """`current` signs every webhook; the others listed sign too until `expires_at`."""

    current: str
    source: Literal["generated", "configuration"]
    secrets: list[SigningSecret]


ROTATE_DOC: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {"schema": {"$ref": REF_TEMPLATE.format(model="RotateRequest")}}
        },
    }
}


async def _view(request: Request, project: str) -> WebhookSecretsView:
    secrets = services_of(request).secrets
    configured = secrets.configured(project)
    if configured:
        now = utcnow()
        listed = [SigningSecret(secret=s, created_at=now) for s in configured]
        return WebhookSecretsView(current=configured[0], source="configuration", secrets=listed)
    active = (await secrets.current(project)).active()
    return WebhookSecretsView(current=active[0].secret, source="generated", secrets=active)


@router.get("", response_model=WebhookSecretsView, responses=errors(401, 503))
async def read_secret(request: Request, caller: SecretHolder) -> Response:
    view = await _view(request, caller.project)
    return json_response(200, view.model_dump(mode="json"))


@router.post(
    "/rotate",
    response_model=WebhookSecretsView,
    responses=errors(400, 401, 409, 413, 422, 503),
    openapi_extra=ROTATE_DOC,
)
async def rotate_secret(request: Request, caller: SecretHolder) -> Response:
    raw = await request.body()
    body = parse_body(RotateRequest, raw) if raw.strip() else RotateRequest()
    services = services_of(request)
    overlap = body.overlap_s
    if overlap is None:
        overlap = services.settings.webhooks.rotation_overlap_s
    await services.secrets.rotate(caller.project, overlap)
    view = await _view(request, caller.project)
    return json_response(200, view.model_dump(mode="json"))
