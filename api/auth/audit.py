"""Audit trail: refused credentials, refused permissions and admin actions, logged and counted.

Records go to the `autoglm.audit` logger as one JSON object per line (route them to your log
store by that logger name); the counters carry bounded labels only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import Counter
from starlette.requests import HTTPConnection

log = logging.getLogger("autoglm.audit")

AUTH_FAILURES = Counter(
    "autoglm_auth_failures_total", "Requests refused for missing or bad credentials", ["reason"]
)
AUTH_DENIED = Counter(
    "autoglm_auth_denied_total", "Requests refused for lack of a permission", ["permission"]
)
ADMIN_ACTIONS = Counter("autoglm_admin_actions_total", "Admin actions carried out", ["action"])


@dataclass(frozen=True)
class Origin:
    """Where a request came from, for requests that are not HTTP (gRPC)."""

    method: str
    path: str
    client: str | None


def _client(conn: HTTPConnection) -> str | None:
    return conn.client.host if conn.client else None


def _where(conn: HTTPConnection | Origin) -> dict[str, Any]:
    if isinstance(conn, Origin):
        return {"method": conn.method, "path": conn.path, "client": conn.client}
    return {"method": conn.scope.get("method"), "path": conn.url.path, "client": _client(conn)}


def _emit(level: int, record: dict[str, Any]) -> None:
    if log.isEnabledFor(level):
        log.log(level, orjson.dumps(record).decode())


def auth_failure(conn: HTTPConnection | Origin, reason: str, message: str) -> None:
    AUTH_FAILURES.labels(reason).inc()
    _emit(
        logging.WARNING,
        {"event": "auth.failure", "reason": reason, "message": message, **_where(conn)},
    )


def denied(conn: HTTPConnection | Origin, subject: str, role: str, permission: str) -> None:
    AUTH_DENIED.labels(permission).inc()
    _emit(
        logging.WARNING,
        {
            "event": "auth.denied",
            "subject": subject,
            "role": role,
            "permission": permission,
            **_where(conn),
        },
    )


def admin_action(conn: HTTPConnection, subject: str, action: str, **fields: Any) -> None:
    ADMIN_ACTIONS.labels(action).inc()
    _emit(
        logging.INFO,
        {"event": "admin", "action": action, "subject": subject, "client": _client(conn), **fields},
    )
