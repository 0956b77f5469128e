"""`/v1/keys`: managed API keys (admin). The secret is in the create answer and nowhere else."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from api.auth import Caller, Permission, require
from api.auth.audit import admin_action
from api.auth.keys import KeyRecord, new_key
from api.contract import READ, WITH_BODY, WITH_ID, errors
from api.deps import json_response, services_of
from api.services import Services
from api.submit import Submitter
from mcp.errors import KeyNotFound
from mcp.records import Record
from mcp.settings import Role
from schemas import utcnow

router = APIRouter(prefix="/v1/keys", tags=["keys"])
Admin = Annotated[Caller, require(Permission.KEYS_MANAGE)]


# In the OpenAPI document too: not both expiries.
NOT_BOTH: dict[str, Any] = {
    "not": {
        "required": ["expires_in_s", "expires_at"],
        "properties": {
            "expires_in_s": {"not": {"type": "null"}},
            "expires_at": {"not": {"type": "null"}},
        },
    }
}


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=NOT_BOTH)

    project: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")
    role: Role
    name: str = Field(default="", max_length=256)
    # At most a hundred years: beyond that a date no longer fits.
    expires_in_s: int | None = Field(default=None, gt=0, le=100 * 365 * 86_400)
    expires_at: datetime | None = None

    @field_validator("expires_in_s", "expires_at", mode="before")
    @classmethod
    def _json_types(cls, value: Any, info: ValidationInfo) -> Any:
        """JSON's own types, as the OpenAPI document says: no "60" or true for a number, no
        number for a date-time."""
        wanted = str if info.field_name == "expires_at" else int | float
        if value is None or (isinstance(value, wanted) and not isinstance(value, bool)):
            return value
        raise ValueError(f"{info.field_name} has the wrong JSON type")

    @model_validator(mode="after")
    def _one_expiry(self) -> KeyCreate:
        if self.expires_in_s is not None and self.expires_at is not None:
            raise ValueError("give expires_in_s or expires_at, not both")
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise ValueError("expires_at needs a time zone")
        return self

    def expiry(self) -> datetime | None:
        if self.expires_in_s is not None:
            return utcnow() + timedelta(seconds=self.expires_in_s)
        return self.expires_at


class KeyView(BaseModel):
    key_id: str
    name: str
    project: str
    role: Role
    prefix: str
    status: str = Field(description="active | expired | revoked")
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyView):
    key: str = Field(description="The secret API key. It is shown this once and never again.")


class KeyList(BaseModel):
    keys: list[KeyView]


async def _record(request: Request, services: Services, record: KeyRecord) -> None:
    """Durable in Kafka first, then known to this process at once (others follow the topic)."""
    submitter: Submitter = request.app.state.submitter
    await submitter.ensure_topics()
    value = record.model_dump_json().encode()
    await services.producer.publish(
        [Record(services.topics.api_keys, record.key_id.encode(), value)]
    )
    services.keyring.apply(record)


@router.post("", status_code=201, response_model=KeyCreated, responses=errors(*WITH_BODY))
async def create_key(body: KeyCreate, request: Request, caller: Admin) -> Response:
    services = services_of(request)
    record, token = new_key(body.project, body.role, body.name, body.expiry(), caller.subject)
    await _record(request, services, record)
    admin_action(
        request,
        caller.subject,
        "key.create",
        key_id=record.key_id,
        project=record.project,
        role=record.role,
    )
    answer: dict[str, Any] = {**record.public(), "key": token}
    return json_response(201, answer)


@router.get("", response_model=KeyList, responses=errors(*READ))
async def list_keys(
    request: Request,
    caller: Admin,
    project: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    records = services_of(request).keyring.all()
    keys = [r.public() for r in records if project is None or r.project == project]
    return json_response(200, {"keys": keys})


@router.delete("/{key_id}", response_model=KeyView, responses=errors(*WITH_ID))
async def revoke_key(key_id: str, request: Request, caller: Admin) -> Response:
    """Revoke a key: every API process refuses it within a second. Revoking twice is a no-op."""
    services = services_of(request)
    record = services.keyring.get(key_id)
    if record is None:
        raise KeyNotFound(f"no API key {key_id!r}", {"key_id": key_id})
    if record.revoked_at is None:
        record = record.model_copy(update={"revoked_at": utcnow()})
        await _record(request, services, record)
        admin_action(request, caller.subject, "key.revoke", key_id=key_id, project=record.project)
    return json_response(200, record.public())
