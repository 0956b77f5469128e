"""The HTTP protocol of `autoglm api`: uvicorn's httptools protocol with admission control in
front of the ASGI task.

Under overload most of the API's connections carry submissions it cannot take yet. Deciding at
the ASGI layer costs each of them a task, a pass through the middleware stack and two `send`
calls before the refusal leaves; here the decision is taken once the headers are parsed, before
any task exists:

- a slot is free: the ASGI task starts, its scope marked as admitted (`api.admission.ADMITTED`:
  the middleware then only times it and frees the slot), and its answer is written to the socket
  in one send, head and body together (`OneWrite`);
- none is free but the submission may wait for one (`admission_max_wait_ms`): no task either
  while it waits; one starts when a slot passes to it;
- otherwise, or when its wait ends without a slot: the 503, with the API.md error body and
  Retry-After, is written to the connection at once, and observed under its route in
  `autoglm_http_request_duration_seconds`. The body that follows the headers is parsed and
  dropped, so the connection stays usable (keep-alive) for the client's retry.

Only `POST /v1/tasks` and `/v1/tasks:batch` are decided here; every other request, and every
request of an in-process server (tests), goes through `api.admission.AdmissionControl` alone.
A poll of one task (`GET /v1/tasks/{task_id}`, `?wait=N` or not) is answered in one send too,
through the transport (the interpreter lock kept): a client polling, or a long poll woken by
its task's end, is the API's other frequent answer, and its client wakes once for it.
"""

from __future__ import annotations

import asyncio
import os
import time
from functools import partial
from typing import Any, cast

from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from api.admission import ADMITTED, GUARDED, STATUS, Admission, refusal_body
from api.front import is_task_poll
from api.metrics import observe_refusal
from mcp.errors import Overloaded

_HEAD = STATUS_LINE[STATUS] + b"content-type: application/json\r\n"


class AdmittingProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` whose submissions pass admission control before their ASGI task."""

    admission: Admission
    # The connection's socket, for `OneWrite`; -1 where its bytes must go through the transport.
    fd = -1

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.fd = plain_socket_fd(transport)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        scope = cycle.scope
        if scope["method"] != "POST" or scope["path"] not in GUARDED:
            if is_task_poll(scope["method"], scope["path"]):
                # One send, through the transport: `os.write` would hand the interpreter lock
                # to the committer, after-commit and projector threads at every poll.
                cycle.transport = cast(asyncio.Transport, OneWrite(self.transport, self.loop))
            super()._start_asgi_task(cycle, app)
            return
        verdict = self.admission.enter(scope)  # type: ignore[arg-type]
        if verdict is None:
            self._admitted(cycle, app)
        elif isinstance(verdict, Overloaded):
            self._refuse(cycle, verdict)
        else:
            waited = partial(self._waited, cycle, app, time.perf_counter())
            verdict.add_done_callback(waited)

    def _admitted(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        scope: Any = cycle.scope
        scope[ADMITTED] = True
        cycle.transport = cast(asyncio.Transport, OneWrite(self.transport, self.loop, self.fd))
        super()._start_asgi_task(cycle, app)

    def _waited(
        self,
        cycle: RequestResponseCycle,
        app: ASGI3Application,
        since: float,
        waiter: asyncio.Future[bool],
    ) -> None:
        granted = not waiter.cancelled() and waiter.result()
        if cycle.disconnected or self.transport.is_closing():
            if granted:
                self.admission.limit.hand_over()  # its client left: the slot goes on
        elif granted:
            self._admitted(cycle, app)
        else:
            self._refuse(cycle, self.admission.full(), time.perf_counter() - since)

    def _refuse(
        self, cycle: RequestResponseCycle, refusal: Overloaded, waited_s: float = 0.0
    ) -> None:
        body, retry_after_s = refusal_body(refusal)
        head = [_HEAD]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"content-length: %d\r\nretry-after: %d\r\n" % (len(body), retry_after_s))
        if not cycle.keep_alive:
            head.append(b"connection: close\r\n")
        head += [b"\r\n", body]
        self.transport.write(b"".join(head))
        # What is left of the request's body is parsed and dropped (`on_body` ignores a
        # completed response); the next request on the connection starts as usual.
        cycle.response_started = cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()
        if self.admission.request_metrics:
            observe_refusal(cycle.scope["path"], waited_s)


class OneWrite:
    """The transport of an admitted submission's cycle, and of a poll's: uvicorn writes an
    answer's head on `http.response.start` and its body on `http.response.body`, two sends on
    the socket for one small answer. Here a write is held until the next one, which takes it
    along, or until the loop's current turn is over (a streamed answer's head, a `100
    Continue`), so a 202 leaves in one send, and nothing waits past the turn in which it was
    written.

    Given the connection's socket (`fd`, plain TCP: a submission's) and nothing queued in the
    transport, the bytes are written to the socket here, as the transport would, but outside
    the interpreter lock (`os.write` lets it go for the system call; the event loop's own write
    keeps it), so the committer and after-commit threads run meanwhile; what the socket does not
    take at once goes to the transport, in order. Without it (a poll's), the one send is the
    transport's: thousands of polls a second each handing the lock to those threads slowed the
    requests' loop more than the writes saved (docs/benchmarks.md, *Polls of one task*)."""

    __slots__ = ("_fd", "_held", "_loop", "_transport")

    def __init__(
        self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, fd: int = -1
    ) -> None:
        self._transport = transport
        self._loop = loop
        self._fd = fd
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self._held = None
            self._send(held + bytes(data))

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._send(held)

    def _send(self, data: bytes) -> None:
        transport = self._transport
        if (
            self._fd >= 0
            and not transport.is_closing()  # (a closed connection's number may be reused)
            and not transport.get_write_buffer_size()
        ):
            try:
                sent = os.write(self._fd, data)
            except OSError:  # full, or broken: the transport meets it its own way
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def plain_socket_fd(transport: asyncio.Transport) -> int:
    """The file descriptor of a plain TCP connection's socket; -1 for TLS or no socket."""
    if transport.get_extra_info("sslcontext") is not None:
        return -1
    sock = transport.get_extra_info("socket")
    return sock.fileno() if sock is not None else -1


def admitting_protocol(admission: Admission) -> type[AdmittingProtocol]:
    """The protocol class for uvicorn's `http=`, bound to the app's admission control."""
    return type("AdmittingProtocol", (AdmittingProtocol,), {"admission": admission})
