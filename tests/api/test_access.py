"""Every route of the app by every kind of credential, against the permission table.

Routes are read from the app itself: a route that declares no permission fails
`test_every_route_declares_a_permission`, and every route is called with each credential.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.routing import Mount

from api.app import create_app
from api.auth import Permission, Role, permission_of
from api.auth.openapi import is_api_route, served_routes
from api.auth.roles import allows
from mcp.settings import Settings
from tests.harness import Platform, submit

JWT_SECRET = "test-jwt-secret-0123456789abcdef0123"
BOOTSTRAP = "bootstrap-admin-key-for-tests"
# FastAPI's own documentation routes, open to everyone.
DOC_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
# Static files, open to everyone.
MOUNTS = {"/ui/static"}
BAD = ("none", "revoked", "expired_jwt", "jwt_without_exp", "wrong_algorithm")
GOOD: dict[str, Role] = {
    "viewer": Role.VIEWER,
    "developer": Role.DEVELOPER,
    "admin": Role.ADMIN,
    "other_project": Role.DEVELOPER,
}
P = Permission
# The permission of every route, written out independently of the routes' declarations: a new
# route fails `test_every_route_declares_a_permission` until it is listed here.
EXPECTED: dict[tuple[str, str], Permission] = {
    ("POST", "/v1/tasks"): P.TASKS_SUBMIT,
    ("GET", "/v1/tasks/{task_id}"): P.TASKS_READ,
    ("POST", "/v1/tasks/{task_id}/cancel"): P.TASKS_CANCEL,
    ("POST", "/v1/tasks/{task_id}/webhook/redeliver"): P.TASKS_REDELIVER,
    ("GET", "/v1/tasks/{task_id}/stream"): P.TASKS_READ,
    ("GET", "/v1/tasks"): P.TASKS_READ,
    ("GET", "/v1/tasks/{task_id}/events"): P.TASKS_READ,
    ("GET", "/v1/tasks/{task_id}/webhook/attempts"): P.TASKS_READ,
    ("GET", "/v1/queues"): P.QUEUES_READ,
    ("GET", "/v1/dlq"): P.DLQ_MANAGE,
    ("POST", "/v1/dlq/{task_id}/requeue"): P.DLQ_MANAGE,
    ("GET", "/v1/webhooks/dead"): P.DLQ_MANAGE,
    ("POST", "/v1/webhooks/dead/redeliver"): P.DLQ_MANAGE,
    ("POST", "/v1/tasks:batch"): P.TASKS_SUBMIT,
    ("POST", "/v1/batches"): P.TASKS_SUBMIT,
    ("GET", "/v1/batches/{batch_id}"): P.TASKS_READ,
    ("GET", "/v1/batches/{batch_id}/results"): P.TASKS_READ,
    ("GET", "/v1/webhooks/secret"): P.WEBHOOK_SECRET,
    ("POST", "/v1/webhooks/secret/rotate"): P.WEBHOOK_SECRET,
    ("POST", "/v1/infer"): P.TASKS_SUBMIT,
    ("POST", "/v1/files"): P.FILES_WRITE,
    ("GET", "/v1/files/{file_id}"): P.FILES_READ,
    ("GET", "/v1/files/{file_id}/content"): P.FILES_READ,
    ("DELETE", "/v1/files/{file_id}"): P.FILES_WRITE,
    ("GET", "/v1/models"): P.MODELS_READ,
    ("GET", "/v1/workers"): P.WORKERS_READ,
    ("GET", "/healthz"): P.PUBLIC,
    ("GET", "/readyz"): P.PUBLIC,
    ("GET", "/metrics"): P.METRICS_READ,
    ("POST", "/v1/keys"): P.KEYS_MANAGE,
    ("GET", "/v1/keys"): P.KEYS_MANAGE,
    ("DELETE", "/v1/keys/{key_id}"): P.KEYS_MANAGE,
    ("GET", "/openapi.json"): P.PUBLIC,
    ("GET", "/docs"): P.PUBLIC,
    ("GET", "/docs/oauth2-redirect"): P.PUBLIC,
    ("GET", "/redoc"): P.PUBLIC,
    ("GET", "/ui"): P.PUBLIC,
    ("GET", "/ui/"): P.PUBLIC,
    ("GET", "/ui/session"): P.SESSION,
    ("POST", "/ui/session"): P.PUBLIC,
    ("DELETE", "/ui/session"): P.PUBLIC,
    ("GET", "/ui/static/{path}"): P.PUBLIC,
}
ECHO = {"model": "echo", "action": "generate", "payload": {"prompt": "hi"}}


def auth_env() -> dict[str, str]:
    return {
        "AUTOGLM_AUTH__ENABLED": "true",
        "AUTOGLM_AUTH__BOOTSTRAP_ADMIN_KEY": BOOTSTRAP,
        "AUTOGLM_AUTH__JWT_SECRET": JWT_SECRET,
    }


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    permission: Permission

    @property
    def task_scoped(self) -> bool:
        return "{task_id}" in self.path


def endpoints(settings: Settings) -> list[Endpoint]:
    """Every (method, path) the app serves, with the permission it declares."""
    routes = served_routes(create_app(settings))
    out: list[Endpoint] = []
    for route in routes:
        methods = sorted(route.methods or ())
        if is_api_route(route):
            permission = permission_of(route.dependant)
            assert permission is not None, (
                f"{methods} {route.path} declares no permission: add "
                "`dependencies=[require(Permission.X)]` or a `Caller` parameter "
                "`Annotated[Caller, require(Permission.X)]` (see README, 'Adding a route')"
            )
            out += [Endpoint(m, route.path, permission) for m in methods]
        elif route.path in DOC_ROUTES:
            out += [Endpoint(m, route.path, Permission.PUBLIC) for m in methods]
        elif isinstance(getattr(route, "original_route", route), Mount):
            assert route.path in MOUNTS, f"mount {route.path} is not a known static mount"
            out.append(Endpoint("GET", route.path + "/{path}", Permission.PUBLIC))
        else:  # a fast path must shadow a documented route that declares its permission
            twins = [
                r
                for r in routes
                if is_api_route(r) and r.path == route.path and set(r.methods) & set(methods)
            ]
            assert twins, f"{route.path} is served outside FastAPI without a documented twin"
    return [e for e in out if e.method != "HEAD"]


def test_every_route_declares_a_permission(settings: Settings) -> None:
    declared = {(e.method, e.path): e.permission for e in endpoints(settings)}
    unlisted = sorted(set(declared) - set(EXPECTED))
    assert not unlisted, f"routes missing from EXPECTED in {__file__}: {unlisted}"
    wrong = {k: (v.value, EXPECTED[k].value) for k, v in declared.items() if EXPECTED[k] != v}
    assert not wrong, f"declared vs expected permission: {wrong}"
    assert set(EXPECTED) - set(declared) == set(), "EXPECTED lists routes the app lacks"


def expected(endpoint: Endpoint, credential: str) -> str:
    """`ok` (anything but 401/403/5xx), or the exact refusal status."""
    if endpoint.permission is Permission.PUBLIC:
        return "ok"
    if credential in BAD:
        return "401"
    if not allows(GOOD[credential], endpoint.permission):
        return "403"
    if credential == "other_project" and endpoint.task_scoped:
        return "404"
    return "ok"


def _jwt(claims: dict[str, Any], key: Any = JWT_SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


class Credentials:
    def __init__(self, platform: Platform) -> None:
        self.tokens: dict[str, str | None] = {"none": None}
        admin = {"Authorization": f"Bearer {BOOTSTRAP}"}
        with platform.client() as client:

            def key(project: str, role: str) -> dict[str, Any]:
                body = {"project": project, "role": role, "name": f"{project}-{role}"}
                response = client.post("/v1/keys", json=body, headers=admin)
                assert response.status_code == 201, response.text
                return dict(response.json())

            for name, role in GOOD.items():
                self.tokens[name] = key("beta" if name == "other_project" else "alpha", role)["key"]
            revoked = key("alpha", "developer")
            gone = client.delete(f"/v1/keys/{revoked['key_id']}", headers=admin)
            assert gone.status_code == 200 and gone.json()["status"] == "revoked"
            self.tokens["revoked"] = revoked["key"]
        now = int(time.time())
        claims = {"sub": "u1", "project": "alpha", "role": "admin"}
        self.tokens["expired_jwt"] = _jwt({**claims, "exp": now - 3600})
        self.tokens["jwt_without_exp"] = _jwt(claims)
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.tokens["wrong_algorithm"] = _jwt({**claims, "exp": now + 600}, rsa_key, "RS256")

    def headers(self, credential: str) -> dict[str, str]:
        token = self.tokens[credential]
        return {"Authorization": f"Bearer {token}"} if token else {}


def _call(client: httpx.Client, endpoint: Endpoint, path: str, headers: dict[str, str]) -> int:
    body = ECHO if (endpoint.method, endpoint.path) == ("POST", "/v1/tasks") else {}
    kwargs: dict[str, Any] = {"headers": headers}
    if endpoint.method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = body
    with client.stream(endpoint.method, path, **kwargs) as response:
        return response.status_code  # streams are not read to their end


@pytest.fixture
def authed(platform: Platform) -> Iterator[Platform]:
    platform.api(**auth_env())
    yield platform


def test_route_by_credential_table(authed: Platform) -> None:
    credentials = Credentials(authed)
    with authed.client() as client:
        accepted = submit(client, ECHO, **credentials.headers("developer"))
        assert accepted.status_code == 202, accepted.text
        task_id = accepted.json()["task_id"]
        failures = []
        table = endpoints(authed.settings)
        for endpoint in table:
            path = endpoint.path.replace("{task_id}", task_id)
            path = path.replace("{key_id}", "no-such-key").replace("{path}", "app.js")
            for credential in (*BAD, *GOOD):
                status = _call(client, endpoint, path, credentials.headers(credential))
                want = expected(endpoint, credential)
                good = (
                    (status not in (401, 403) and status < 500)
                    if want == "ok"
                    else (str(status) == want)
                )
                if not good:
                    failures.append(
                        f"{endpoint.method} {endpoint.path} as {credential}: {status}, want {want}"
                    )
    assert not failures, "\n".join(failures)
    assert len(table) >= 12
