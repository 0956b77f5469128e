"""Prometheus metrics of the API process."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SUBMITTED = Counter(
    "autoglm_tasks_submitted_total", "Tasks accepted (202) by model and action", ["model", "action"]
)
REFUSED = Counter("autoglm_tasks_refused_total", "Submissions answered 4xx/5xx", ["code"])
SUBMIT_SECONDS = Histogram(
    "autoglm_submit_seconds",
    "Time from request to durable commit",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
TRANSACTIONS = Gauge("autoglm_api_transactions", "Kafka transactions committed by this process")
PROJECTED = Gauge("autoglm_projected_events", "Task events applied to Redis by this process")
ADMISSION_LIMIT = Gauge(
    "autoglm_api_admission_limit",
    "Submissions the API accepts at once (adaptive admission control)",
)
# Label children by label values: `labels()` validates and locks on every call, a dict does not.
_submitted: dict[tuple[str | None, str | None], Any] = {}


def count_submitted(model: str | None, action: str | None) -> None:
    child = _submitted.get((model, action))
    if child is None:
        child = _submitted[(model, action)] = SUBMITTED.labels(model, action)
    child.inc()


REQUEST_SECONDS = Histogram(
    "autoglm_http_request_duration_seconds",
    "HTTP requests to the API by route template, method and status code",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30),
)


_requests: dict[tuple[str, str, int], Any] = {}


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    """One request in `autoglm_http_request_duration_seconds`, by its route's template."""
    key = (route, method, status)
    child = _requests.get(key)
    if child is None:
        child = _requests[key] = REQUEST_SECONDS.labels(*key)
    child.observe(seconds)


def observe_refusal(route: str, seconds: float) -> None:
    """A submission refused by the HTTP protocol (api.protocol), which no middleware sees."""
    observe_request(route, "POST", 503, seconds)


class RequestMetrics:
    """Pure ASGI middleware: one histogram observation per HTTP request, labelled with the
    route's template (never the raw path: `/v1/tasks/{task_id}`), so labels stay bounded.
    FastAPI names the route in `scope["route"]`; a plain Starlette route in front of it leaves
    its endpoint in `scope["endpoint"]`, whose path `routes` tells."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.routes = routes
        self._paths: dict[Any, str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        began = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or self._path_of(scope.get("endpoint"))
            observe_request(template, scope["method"], status, time.perf_counter() - began)

    def _path_of(self, endpoint: Any) -> str:
        if self._paths is None:
            self._paths = {
                getattr(r, "endpoint", None): getattr(r, "path", "") for r in self.routes
            }
        return self._paths.get(endpoint) or "unmatched"
