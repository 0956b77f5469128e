"""The OpenAPI document names, for each route, the refusals its permission can bring."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, routing
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from api.auth.guard import permission_of
from api.auth.roles import PERMISSIONS, Permission
from schemas import ErrorBody

_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}


def served_routes(app: FastAPI) -> list[Any]:
    """Every route of the app, routers included, each with `path`, `methods`, `dependant`."""
    iterate = getattr(routing, "iter_route_contexts", None)
    if iterate is None:  # FastAPI before routers were kept as included branches
        return list(app.routes)
    return list(iterate(app.routes))


def is_api_route(route: Any) -> bool:
    original: BaseRoute = getattr(route, "original_route", route)
    return isinstance(original, APIRoute)


def document_access(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault(
            "ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        for name, sub in (
            ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
            .get("$defs", {})
            .items()
        ):
            schemas.setdefault(name, sub)
        schemas["ErrorBody"].pop("$defs", None)
        for route in served_routes(app):
            if not is_api_route(route):
                continue
            permission = permission_of(route.dependant)
            if permission is None or permission is Permission.PUBLIC:
                continue
            refusals = {"401": "Missing, invalid, expired or revoked credentials"}
            if any(permission not in held for held in PERMISSIONS.values()):
                refusals["403"] = f"The caller's role lacks the permission `{permission.value}`"
            for method in route.methods or ():
                operation = schema["paths"][route.path_format][method.lower()]
                for status, text in refusals.items():
                    operation["responses"].setdefault(
                        status, {"description": text, "content": _ERROR}
                    )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
