"""Routes of the dashboard: its pages, its static files, and the session cookie.

The API key is entered once on the login page and kept in a `Secure`, `HttpOnly`,
`SameSite=Strict` cookie; every `/v1` route accepts it in place of the `Authorization` header
(see `api.auth.guard`), so the dashboard has exactly the API's credentials and nothing more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from api.auth import (
    SESSION_COOKIE,
    Caller,
    Permission,
    Refused,
    Role,
    audit,
    require,
)
from api.auth.guard import ANONYMOUS
from api.deps import json_response, services_of
from schemas import ErrorBody

STATIC = Path(__file__).parent / "static"
SESSION_MAX_AGE_S = 12 * 3600
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(prefix="/ui", tags=["dashboard"])


class SessionRequest(BaseModel):
    api_key: str = Field(min_length=1, max_length=4096)


class Session(BaseModel):
    project: str
    auth: bool = Field(description="Whether the API asks for credentials at all")
    role: Role
    permissions: list[Permission] = Field(description="What the role may do (the pages to show)")

    @classmethod
    def of(cls, caller: Caller, auth: bool) -> Session:
        held = sorted(p for p in Permission if caller.can(p) and p is not Permission.PUBLIC)
        return cls(project=caller.project, auth=auth, role=caller.role, permissions=held)


ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "The body is not valid JSON"},
    401: {"model": ErrorBody, "description": "No valid API key"},
    413: {"model": ErrorBody, "description": "The body is over the size limit"},
    422: {"model": ErrorBody, "description": "The body does not fit the schema"},
}


def _secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


@router.get("", include_in_schema=False, dependencies=[require(Permission.PUBLIC)])
@router.get("/", include_in_schema=False, dependencies=[require(Permission.PUBLIC)])
async def index() -> Response:
    page = FileResponse(STATIC / "index.html", media_type="text/html")
    page.headers["Cache-Control"] = "no-cache"
    return _secured(page)


@router.get("/session", response_model=Session, responses={401: ERRORS[401]})
async def who_am_i(
    request: Request, caller: Annotated[Caller, require(Permission.SESSION)]
) -> Response:
    """The project of the session cookie (or of the bearer token)."""
    auth = services_of(request).settings.auth.enabled
    return json_response(200, Session.of(caller, auth).model_dump(mode="json"))


@router.post(
    "/session",
    response_model=Session,
    responses=ERRORS,
    dependencies=[require(Permission.PUBLIC)],
)
async def log_in(body: SessionRequest, request: Request) -> Response:
    """Check an API key (or token) and keep it in the dashboard's HTTP-only cookie."""
    authenticator = services_of(request).authenticator
    if authenticator is None:
        return json_response(200, Session.of(ANONYMOUS, False).model_dump(mode="json"))
    try:
        caller = authenticator.caller(body.api_key)
    except Refused as exc:
        audit.auth_failure(request, exc.reason, exc.message)
        raise
    response = json_response(200, Session.of(caller, True).model_dump(mode="json"))
    response.set_cookie(
        SESSION_COOKIE,
        body.api_key,
        max_age=SESSION_MAX_AGE_S,
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    return response


@router.delete("/session", status_code=204, dependencies=[require(Permission.PUBLIC)])
async def log_out() -> Response:
    """Forget the session cookie."""
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


class StaticAssets(StaticFiles):
    """The dashboard's files, with the same security headers as its page."""

    def __init__(self) -> None:
        super().__init__(directory=STATIC)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await super().__call__(scope, receive, send_secured)
