"""The API's outermost layer: a submission (`POST /v1/tasks`) goes straight to its endpoint.

Every other request passes the whole stack: Starlette's 500 guard, FastAPI's telemetry and body
limit layers, our request metrics, admission control, body size limit and compression, the
exception handlers, FastAPI's exit stack, the router and the route's own exception wrapper,
each an ASGI call of its own and several with a `send` of their own that each response message
passes through. For the hottest request of the API that is much of what the framework costs,
so a submission whose body is announced (Content-Length) is served here, in one layer doing what
those layers do for it, in their order:

- request metrics: one observation in `autoglm_http_request_duration_seconds` under the route
  `/v1/tasks` (`unmatched` for a refusal before the route, as the router-less layers label it);
- admission control (`api.admission.admit`): a slot, or the 503 with Retry-After; a submission
  the HTTP protocol admitted already (`api.protocol`) is only timed;
- the body size limit: 413 with the API.md error body when Content-Length is over the limit;
- compression: gzip for a client that asks for it (`GZipMiddleware`, as `CompressResponses`);
- the exception handlers of the app (`errors.install`), looked up as Starlette does;
  an exception none handles is answered 500 `Internal Server Error` and raised on to the
  server, as Starlette's `ServerErrorMiddleware` does.

A poll (`GET /v1/tasks/{id}`, or a long poll `?wait=N`) is served here too when it has no body
and no query but a plain `wait` within its bounds: request metrics under `/v1/tasks/{task_id}`,
compression, the exception handlers, the 500 guard, around the read endpoint (which checks its
permission itself, as the route's dependency does). Any other query (`include`, a `wait` the route
would refuse) goes to the route, whose validation answers it.

A streamed body (no Content-Length), and every other request, goes through the whole stack.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI
from starlette._exception_handler import _lookup_exception_handler
from starlette._utils import is_async_callable
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.admission import STATUS as REFUSED
from api.admission import Admission, admit
from api.limits import content_length, refuse_too_large, wants_gzip
from api.metrics import observe_request

PATH = "/v1/tasks"
READ_PATH = "/v1/tasks/{task_id}"
_TASKS = PATH + "/"
# The queries a poll served here may carry: none, or a wait of up to 3 digits and 6 decimals.
_READ_QUERY = re.compile(rb"(?:wait=(\d{1,3}(?:\.\d{1,6})?))?")
Endpoint = Callable[[Request], Awaitable[Response]]


def is_task_poll(method: str, path: str) -> bool:
    """Whether a request is a poll of one task (`GET /v1/tasks/{task_id}`, `?wait=N` or not)."""
    return (
        method == "GET"
        and path.startswith(_TASKS)
        and path != _TASKS
        and "/" not in path[len(_TASKS) :]
    )


class Front:
    """The submission path in one ASGI layer; everything else to `app`, the whole stack."""

    def __init__(
        self,
        app: ASGIApp,
        endpoint: Endpoint,
        handlers: Mapping[Any, Callable[..., Any]],
        max_bytes: int,
        admission: Admission | None = None,
        metrics: bool = True,
        gzip_min_bytes: int | None = None,
        reader: Endpoint | None = None,
        max_wait_s: float = 0.0,
    ) -> None:
        self.app = app
        self.endpoint = endpoint
        self.reader = reader
        self.max_wait_s = max_wait_s
        self.max_bytes = max_bytes
        self.admission = admission
        self.metrics = metrics
        # As Starlette's ExceptionMiddleware splits them: by status code and by exception class.
        self.status_handlers: dict[Any, Any] = {
            k: v for k, v in handlers.items() if isinstance(k, int)
        }
        self.handlers: dict[Any, Any] = {
            k: v for k, v in handlers.items() if not isinstance(k, int)
        }
        self.gzip = (
            GZipMiddleware(self._routed, minimum_size=gzip_min_bytes)
            if gzip_min_bytes is not None
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            wait = self._poll_wait(scope) if self.reader is not None else None
            if wait is None:
                await self.app(scope, receive, send)
            else:
                await self._read(scope, receive, send, wait)
            return
        length = content_length(scope)
        if length is None:  # streamed: counted by BodySizeLimit in the stack
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        outcome = (500, True)
        try:
            if self.admission is None:
                outcome = await self._limited(scope, receive, send, length)
            else:
                admitted = await admit(
                    self.admission, scope, send, lambda: self._limited(scope, receive, send, length)
                )
                outcome = (REFUSED, False) if admitted is None else admitted
        finally:
            if self.metrics:
                status, routed = outcome
                seconds = time.perf_counter() - began
                observe_request(PATH if routed else "unmatched", "POST", status, seconds)

    def _poll_wait(self, scope: Scope) -> float | None:
        """The wait of a poll of one task served here (0 for none); None: for the stack."""
        if scope["type"] != "http" or not is_task_poll(scope["method"], scope["path"]):
            return None
        query = _READ_QUERY.fullmatch(scope.get("query_string", b""))
        if query is None or not _bodiless(scope):
            return None
        wait = float(query[1]) if query[1] is not None else 0.0
        return wait if wait <= self.max_wait_s else None

    async def _read(self, scope: Scope, receive: Receive, send: Send, wait: float) -> None:
        began = time.perf_counter()
        status = 500
        try:
            scope["endpoint"] = self.reader  # as the router sets it
            scope["path_params"] = {"task_id": scope["path"][len(_TASKS) :]}
            scope[WAIT] = wait
            if self.gzip is not None and wants_gzip(scope):
                await self.gzip(scope, receive, send)
                status = scope.get(_STATUS, 500)
            else:
                status = await self._answer(scope, receive, send)
        finally:
            if self.metrics:
                observe_request(READ_PATH, "GET", status, time.perf_counter() - began)

    async def _limited(
        self, scope: Scope, receive: Receive, send: Send, length: int
    ) -> tuple[int, bool]:
        """(the status answered, whether the route was reached)."""
        if length > self.max_bytes:
            await refuse_too_large(scope, receive, send, self.max_bytes)
            return 413, False
        scope["endpoint"] = self.endpoint  # as the router sets it
        scope["path_params"] = {}
        if self.gzip is not None and wants_gzip(scope):
            await self.gzip(scope, receive, send)
            return scope.get(_STATUS, 500), True
        return await self._answer(scope, receive, send), True

    async def _routed(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._answer(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> int:
        request = Request(scope, receive, send)
        endpoint: Endpoint = scope["endpoint"]
        try:
            try:
                response = await endpoint(request)
            except Exception as exc:
                response = await self._handled(request, exc)
        except Exception:
            # What ServerErrorMiddleware answers (no debug page, no handler of its own).
            await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
            raise
        scope[_STATUS] = response.status_code
        await response(scope, receive, send)
        return response.status_code

    async def _handled(self, request: Request, exc: Exception) -> Response:
        handler: Any = None
        if isinstance(exc, HTTPException):
            handler = self.status_handlers.get(exc.status_code)
        if handler is None:
            handler = _lookup_exception_handler(self.handlers, exc)
        if handler is None:
            raise exc
        if is_async_callable(handler):
            response = await handler(request, exc)
        else:
            response = await run_in_threadpool(handler, request, exc)
        exc.__traceback__ = None  # reused exception instances would pile up tracebacks
        if not isinstance(response, Response):
            raise TypeError(f"the handler of {type(exc).__name__} answered no response")
        return response


# Where the answered status is left in the scope for a compressed answer's observation.
_STATUS = "autoglm.status"
WAIT = "autoglm.wait"
"""Where a poll served by `Front` finds its wait (seconds; 0 for none)."""


def _bodiless(scope: Scope) -> bool:
    """Whether a request announces no body (neither Content-Length nor Transfer-Encoding)."""
    return not any(
        name == b"content-length" or name == b"transfer-encoding" for name, _ in scope["headers"]
    )


class FrontedAPI(FastAPI):
    """FastAPI with `Front` outside its whole middleware stack, once `front` is set."""

    front: Callable[[ASGIApp], Front] | None = None

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        return self.front(stack) if self.front is not None else stack
