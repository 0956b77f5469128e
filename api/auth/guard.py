"""Who is calling, and may they: the one place a request is authenticated and authorised.

A route declares what it needs with a dependency: `caller: Annotated[Caller, require(P.X)]`, or
`dependencies=[require(P.X)]` when it does not use the caller. A credential is the bootstrap
admin key, a key from configuration, a managed key (`agk_…`) or a JWT, sent as a bearer token
or, for the dashboard, kept in the HTTP-only session cookie that `POST /ui/session` sets. A
cookie-borne credential authorises a state-changing request only with the dashboard's header,
which a cross-site form cannot send (and the cookie is `SameSite=Strict` besides).
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from api.auth import audit
from api.auth.keys import KeyRing, key_id_of
from api.auth.roles import Permission, Role, allows
from api.auth.tokens import TokenRefused, TokenVerifier
from mcp.errors import PermissionDenied, Unauthenticated
from mcp.settings import AuthSettings, ConfiguredKey
from schemas import utcnow

DEFAULT_PROJECT = "default"
# Verified JWTs, so a client reusing its token pays for the signature check once.
TOKEN_CACHE_SIZE = 4096
SESSION_COOKIE = "autoglm_session"
UI_HEADER = "x-autoglm-ui"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Caller:
    project: str
    role: Role
    subject: str  # `key:<id>`, `config:<prefix>`, `jwt:<sub>` or `anonymous`

    def can(self, permission: Permission) -> bool:
        return allows(self.role, permission)

    def sees(self, project: str) -> bool:
        """Objects of other projects do not exist for a caller, except for an admin."""
        return project == self.project or self.can(Permission.ALL_PROJECTS)


ANONYMOUS = Caller(DEFAULT_PROJECT, Role.ADMIN, "anonymous")


class Refused(Unauthenticated):
    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class Authenticator:
    def __init__(self, auth: AuthSettings, ring: KeyRing) -> None:
        self.auth = auth
        self.ring = ring
        self.tokens = TokenVerifier(auth)
        self.configured: dict[str, ConfiguredKey] = {
            key: value if isinstance(value, ConfiguredKey) else ConfiguredKey(project=value)
            for key, value in auth.api_keys.items()
        }
        self._verified: dict[str, tuple[Caller, float]] = {}

    def caller(self, token: str) -> Caller:
        """The caller a bearer token stands for; `Unauthenticated` when it stands for no one."""
        bootstrap = self.auth.bootstrap_admin_key
        if bootstrap and hmac.compare_digest(token.encode(), bootstrap.encode()):
            return Caller(self.auth.admin_project, Role.ADMIN, "bootstrap")
        configured = self.configured.get(token)
        if configured is not None:
            return Caller(configured.project, Role(configured.role), f"config:{token[:4]}")
        if key_id_of(token) is not None:
            return self._managed(token)
        if token.count(".") == 2 and self.tokens.enabled:
            return self._jwt(token)
        raise Refused("invalid API key or token", "unknown_key")

    def _managed(self, token: str) -> Caller:
        record = self.ring.match(token)
        if record is None:
            raise Refused("invalid API key", "unknown_key")
        if record.revoked_at is not None:
            raise Refused("this API key was revoked", "revoked_key")
        if not record.active(utcnow()):
            raise Refused("this API key has expired", "expired_key")
        return Caller(record.project, Role(record.role), f"key:{record.key_id}")

    def _jwt(self, token: str) -> Caller:
        """A token's signature and claims never change: once verified, only `exp` is checked
        again (the cache holds nothing else that time could invalidate)."""
        cached = self._verified.get(token)
        if cached is not None:
            caller, expires = cached
            if time.time() < expires + self.auth.jwt_leeway_s:
                return caller
            self._verified.pop(token, None)
        try:
            claims = self.tokens.claims(token)
        except TokenRefused as exc:
            raise Refused(exc.message, exc.reason) from exc
        caller = self._caller_of(claims)
        if len(self._verified) >= TOKEN_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (caller, float(claims["exp"]))
        return caller

    def _caller_of(self, claims: dict[str, Any]) -> Caller:
        project = claims.get(self.auth.jwt_project_claim) or claims.get("sub")
        role = claims.get(self.auth.jwt_role_claim, self.auth.jwt_default_role)
        if not isinstance(project, str) or not project:
            raise Refused("the token names no project", "missing_claim")
        if role not in {r.value for r in Role}:
            raise Refused(f"unknown role {role!r}", "role")
        return Caller(project, Role(role), f"jwt:{claims.get('sub', project)}")


def authorize(
    authenticator: Authenticator | None,
    token: str | None,
    permission: Permission,
    origin: HTTPConnection | audit.Origin,
) -> Caller:
    """The caller `token` stands for, if it holds `permission`; every front door's one check."""
    if authenticator is None:  # auth is off: one project, every permission
        return ANONYMOUS
    if not token:
        audit.auth_failure(origin, "missing", "missing bearer token")
        raise Unauthenticated("missing bearer token")
    try:
        caller = authenticator.caller(token)
    except Refused as exc:
        audit.auth_failure(origin, exc.reason, exc.message)
        raise
    if not caller.can(permission):
        audit.denied(origin, caller.subject, caller.role.value, permission.value)
        raise PermissionDenied(
            f"role {caller.role.value!r} lacks the permission {permission.value!r}",
            {"permission": permission.value, "role": caller.role.value},
        )
    return caller


_BEARER = HTTPBearer(auto_error=False, description="An API key or a JWT")
_CREDENTIALS = Security(_BEARER)


class Require:
    """The dependency that authenticates the request and checks one permission."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    async def __call__(
        self,
        conn: HTTPConnection,
        credentials: HTTPAuthorizationCredentials | None = _CREDENTIALS,
    ) -> Caller:
        token = credentials.credentials if credentials else self._cookie(conn)
        return self.check(conn, token)

    def check(self, conn: HTTPConnection, token: str | None) -> Caller:
        return authorize(conn.app.state.services.authenticator, token, self.permission, conn)

    def from_request(self, conn: HTTPConnection) -> Caller:
        """For routes that skip FastAPI's dependency injection (the submit fast path)."""
        scheme, _, token = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return self.check(conn, token.strip())
        return self.check(conn, self._cookie(conn))

    @staticmethod
    def _cookie(conn: HTTPConnection) -> str | None:
        cookie = conn.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        if conn.scope.get("method") not in SAFE_METHODS and conn.headers.get(UI_HEADER) != "1":
            raise PermissionDenied(f"a dashboard session needs the {UI_HEADER} header to write")
        return cookie


class Public:
    """The dependency of routes anyone may call."""

    permission = Permission.PUBLIC

    async def __call__(self) -> None:
        return None


def require(permission: Permission) -> Any:
    """`Depends` on the check of `permission`; the value is the `Caller`."""
    if permission is Permission.PUBLIC:
        return Security(Public())
    return Security(Require(permission))


def permission_of(dependant: Any) -> Permission | None:
    """The permission a route's dependencies declare (searched depth first), if any."""
    for dep in getattr(dependant, "dependencies", []):
        found = getattr(dep.call, "permission", None)
        if isinstance(found, Permission):
            return found
        nested = permission_of(dep)
        if nested is not None:
            return nested
    return None
