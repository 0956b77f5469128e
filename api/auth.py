"""Who is calling: an API key or an HS256 JWT names the caller's project."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import orjson
from fastapi import HTTPException, Request

from mcp.settings import Settings

DEFAULT_PROJECT = "default"


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


async def caller_project(request: Request) -> str:
    settings: Settings = request.app.state.services.settings
    if not settings.auth.enabled:
        return DEFAULT_PROJECT
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    project = settings.auth.api_keys.get(token)
    if project is None and settings.auth.jwt_secret:
        project = project_from_jwt(token, settings.auth.jwt_secret)
    if project is None:
        raise HTTPException(401, "invalid API key or token", headers={"WWW-Authenticate": "Bearer"})
    return project
