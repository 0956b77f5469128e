"""Who is calling: an API key or an HS256 JWT names the caller's project.

The credential comes from the `Authorization: Bearer` header or, for the dashboard, from the
HTTP-only session cookie that `POST /ui/session` sets. A cookie-borne credential authorises a
state-changing request only when it also carries the dashboard's header, which a cross-site form
cannot send (and the cookie is `SameSite=Strict` besides).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import orjson
from fastapi import HTTPException, Request

from mcp.settings import Settings

DEFAULT_PROJECT = "default"
SESSION_COOKIE = "autoglm_session"
UI_HEADER = "x-autoglm-ui"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def project_from_jwt(token: str, secret: str) -> str | None:
    """The project of a valid, unexpired HS256 token, else None."""
    try:
        header_b64, claims_b64, signature_b64 = token.split(".")
        header = orjson.loads(_b64(header_b64))
        if header.get("alg") != "HS256":
            return None
        expected = hmac.new(
            secret.encode(), f"{header_b64}.{claims_b64}".encode(), hashlib.sha256
        ).digest()
        if not hmac.compare_digest(expected, _b64(signature_b64)):
            return None
        claims = orjson.loads(_b64(claims_b64))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if "exp" in claims and float(claims["exp"]) < time.time():
        return None
    project = claims.get("project") or claims.get("sub")
    return str(project) if project else None


def project_of(settings: Settings, token: str) -> str | None:
    """The project an API key or a valid token belongs to, else None."""
    project = settings.auth.api_keys.get(token)
    if project is None and settings.auth.jwt_secret:
        project = project_from_jwt(token, settings.auth.jwt_secret)
    return project


def _credential(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        if request.method not in SAFE_METHODS and request.headers.get(UI_HEADER) != "1":
            raise HTTPException(403, f"a dashboard session needs the {UI_HEADER} header to write")
        return cookie
    raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})


async def caller_project(request: Request) -> str:
    settings: Settings = request.app.state.services.settings
    if not settings.auth.enabled:
        return DEFAULT_PROJECT
    project = project_of(settings, _credential(request))
    if project is None:
        raise HTTPException(401, "invalid API key or token", headers={"WWW-Authenticate": "Bearer"})
    return project
