"""The exact OpenAPI document: declared error statuses per route, and a submit schema that
accepts exactly the bodies the server accepts.

Convention for every route: `responses=errors(...)` lists each non-2xx status it can answer,
all with the error body `{"error": {"code", "message", "details"}}`. Every `/v1` route can also
answer 401 (auth on) and 503 (Redis or Kafka unavailable); a route with a body 400 (not JSON),
413 (too large) and 422; a route with a path parameter 404. `tests/api/test_contract.py` fails
for a route that does not declare them, and schemathesis checks the rest against the running API.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from mcp.registry import ModelRegistry
from schemas import ErrorBody, MCPEnvelope, RotateRequest, SubmitRequest
from schemas.payloads import PAYLOADS

DESCRIPTIONS = {
    400: "The body is not valid JSON",
    401: "Missing or invalid credentials",
    403: "The caller's role does not allow this",
    404: "No such object for the caller's project",
    409: "Conflicts with an earlier request (idempotency key, state)",
    413: "The body is over the size limit",
    415: "Unsupported content type",
    422: "The request does not fit the schema, or names an unknown model or action",
    429: "Rate limited; `Retry-After` says when to come back",
    503: "Kafka or Redis is unavailable; nothing was recorded. `Retry-After` is set",
}
REF_TEMPLATE = "#/components/schemas/{model}"
SUBMIT_SCHEMA = "SubmitRequest"
INFER_SCHEMA = "InferRequest"
SUBMIT_REF = REF_TEMPLATE.format(model=SUBMIT_SCHEMA)
INFER_REF = REF_TEMPLATE.format(model=INFER_SCHEMA)


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: its error statuses, each with the error body."""
    return {s: {"model": ErrorBody, "description": DESCRIPTIONS[s]} for s in sorted(statuses)}


# The statuses every kind of /v1 route can answer.
READ = (401, 422, 503)
WITH_ID = (401, 404, 422, 503)
WITH_BODY = (400, 401, 413, 422, 503)


def _json_schema(model: type[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    return schema, schema.pop("$defs", {})


def _branch(
    base: dict[str, Any], models: list[str], actions: list[str], payload: dict[str, Any]
) -> dict[str, Any]:
    branch = copy.deepcopy(base)
    branch["properties"]["model"] = {"type": "string", "enum": models}
    branch["properties"]["action"] = {"type": "string", "enum": actions}
    branch["properties"]["payload"] = payload
    if payload.get("required") or "oneOf" in payload:
        # A missing payload is `{}`, which this action refuses.
        branch["required"] = sorted({*branch.get("required", []), "payload"})
    branch.pop("title", None)
    return branch


def _echo_models(registry: ModelRegistry) -> list[tuple[str, list[str]]]:
    return [
        (n, sorted(s.actions)) for n, s in sorted(registry.specs.items()) if s.backend == "echo"
    ]


def _offering(registry: ModelRegistry, action: str) -> list[str]:
    """The non-echo models that offer `action` (their payloads are checked)."""
    return sorted(
        n for n, s in registry.specs.items() if action in s.actions and s.backend != "echo"
    )


def submit_schema(registry: ModelRegistry) -> tuple[dict[str, Any], dict[str, Any]]:
    """(schema, its definitions): one branch per action with the models offering it and the
    action's payload; `echo` models take any JSON object as payload."""
    base, defs = _json_schema(SubmitRequest)
    branches: list[dict[str, Any]] = []
    for action, payload_model in PAYLOADS.items():
        models = _offering(registry, action)
        if models:
            payload, payload_defs = _json_schema(payload_model)
            defs.update(payload_defs)
            branches.append(_branch(base, models, [action], payload))
    for name, actions in _echo_models(registry):
        branches.append(_branch(base, [name], actions, {"type": "object"}))
    return {"title": SUBMIT_SCHEMA, "oneOf": branches}, defs


def envelope_schema(
    registry: ModelRegistry, default_model: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The MCP envelope: `payload.model` (or the default model) picks the model; the payload's
    `callback_url`, `timeout_s`, `ttl_s` are the task's options, the rest its payload."""
    base, defs = _json_schema(MCPEnvelope)
    submit_props = SubmitRequest.model_json_schema(ref_template=REF_TEMPLATE)["properties"]
    options = {k: submit_props[k] for k in ("callback_url", "timeout_s", "ttl_s")}

    def branch(models: list[str], actions: list[str], payload: dict[str, Any]) -> dict[str, Any]:
        payload = copy.deepcopy(payload)
        payload.setdefault("properties", {}).update(
            {**options, "model": {"type": "string", "enum": models}}
        )
        if default_model not in models:
            payload["required"] = sorted({*payload.get("required", []), "model"})
        envelope = copy.deepcopy(base)
        envelope["properties"]["action"] = {"type": "string", "enum": actions}
        envelope["properties"]["payload"] = payload
        if payload.get("required") or "oneOf" in payload:
            envelope["required"] = sorted({*envelope.get("required", []), "payload"})
        envelope.pop("title", None)
        return envelope

    branches: list[dict[str, Any]] = []
    for action, payload_model in PAYLOADS.items():
        models = _offering(registry, action)
        if models:
            payload, payload_defs = _json_schema(payload_model)
            defs.update(payload_defs)
            branches.append(branch(models, [action], payload))
    for name, actions in _echo_models(registry):
        branches.append(branch([name], actions, {"type": "object"}))
    return {"title": "MCPEnvelope", "oneOf": branches}, defs


def infer_schema() -> dict[str, Any]:
    return {
        "title": INFER_SCHEMA,
        "oneOf": [
            {"$ref": REF_TEMPLATE.format(model=SUBMIT_SCHEMA)},
            {"$ref": REF_TEMPLATE.format(model="MCPEnvelope")},
        ],
    }


ERROR_CONTENT = {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model="ErrorBody")}}}
SSE_EVENT = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "event": {"type": "string", "enum": ["token", "status", "end"]},
        "data": {"type": "string", "description": "JSON: `{delta}`, `{status, attempt}`"},
    },
    "required": ["id", "event", "data"],
}


def _error_bodies_are_json(document: dict[str, Any]) -> None:
    """Error answers are JSON whatever a route's own media type (an event stream, text)."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if status[0] in "45":
                    response["content"] = copy.deepcopy(ERROR_CONTENT)
                elif "text/event-stream" in response.get("content", {}):
                    response["content"] = {"text/event-stream": {"schema": SSE_EVENT}}


def install(app: FastAPI, registry: ModelRegistry, default_model: str) -> None:
    """Complete the document once (after any other customisation installed before this one),
    with the registry's models in the submit schema."""
    previous = app.openapi
    done: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        if done:
            return done[0]
        document = previous()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        submit, defs = submit_schema(registry)
        envelope, envelope_defs = envelope_schema(registry, default_model)
        schemas.update({**defs, **envelope_defs, SUBMIT_SCHEMA: submit, "MCPEnvelope": envelope})
        schemas[INFER_SCHEMA] = infer_schema()
        schemas["RotateRequest"] = RotateRequest.model_json_schema(ref_template=REF_TEMPLATE)
        _error_bodies_are_json(document)
        app.openapi_schema = document
        done.append(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
