"""Admission control in the HTTP protocol of `autoglm api` (api.protocol): a submission over the
bound is answered 503 with the API.md error body and Retry-After before any ASGI task exists; an
admitted one runs as usual and frees its slot; one that waits for a slot has no task meanwhile.
Real uvicorn protocol objects over an in-memory transport."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import uvicorn
from prometheus_client import REGISTRY
from uvicorn.server import ServerState

from api.admission import ADMITTED, AdaptiveLimit, Admission, AdmissionControl
from api.protocol import AdmittingProtocol, OneWrite, admitting_protocol
from mcp.settings import ServerSettings
from schemas.errors import ErrorBody

SUBMIT = (
    b"POST /v1/tasks HTTP/1.1\r\nhost: api\r\ncontent-type: application/json\r\n"
    b"content-length: 2\r\n\r\n{}"
)


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.writes = 0
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data
        self.writes += 1

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def answers(self) -> list[tuple[int, dict[bytes, bytes], bytes]]:
        """(status, headers, body) of each complete response written so far."""
        out, data = [], bytes(self.written)
        while data:
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
            length = int(headers[b"content-length"])
            out.append((int(lines[0].split()[1]), headers, rest[:length]))
            data = rest[length:]
        return out


class Server:
    """An app behind AdmissionControl, served by AdmittingProtocol; the app's calls wait for
    `release`."""

    def __init__(
        self, slots: int, max_wait_ms: float, retry_after_s: int = 3, pending_bytes: int = 0
    ) -> None:
        settings = ServerSettings(
            admission_min_inflight=slots,
            admission_max_inflight=slots,
            admission_max_wait_ms=max_wait_ms,
            admission_retry_after_s=retry_after_s,
            admission_max_pending_bytes=1000,
        )
        self.limit = AdaptiveLimit(slots, slots, 0.1)
        # The app's state as the protocol sees it: the producer's bytes waiting for Kafka.
        self.producer = SimpleNamespace(pending_bytes=pending_bytes)
        app_state = SimpleNamespace(services=SimpleNamespace(producer=self.producer))
        self.admission = Admission(settings, self.limit, app_state)
        self.admission.request_metrics = True
        self.release = asyncio.Event()
        self.calls: list[dict[str, Any]] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            self.calls.append(scope)
            await receive()
            await self.release.wait()
            headers = [(b"content-length", b"2")]
            await send({"type": "http.response.start", "status": 202, "headers": headers})
            await send({"type": "http.response.body", "body": b"{}"})

        middleware = AdmissionControl(app, settings, self.limit, self.admission)
        config = uvicorn.Config(middleware, proxy_headers=False, lifespan="off", access_log=False)
        config.load()
        self.config = config
        self.state = ServerState()
        self.protocol_class = admitting_protocol(self.admission)

    def connect(self) -> tuple[AdmittingProtocol, Transport]:
        protocol = self.protocol_class(self.config, self.state, {})
        transport = Transport()
        protocol.connection_made(transport)
        return protocol, transport

    async def settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    async def occupy_the_slot(self) -> None:
        """A submission on a connection of its own takes the one slot and holds it until
        `release` is set."""
        holder, _ = self.connect()
        holder.data_received(SUBMIT)
        await self.settle()


def refusals_observed() -> float:
    labels = {"route": "/v1/tasks", "method": "POST", "status": "503"}
    count = REGISTRY.get_sample_value("autoglm_http_request_duration_seconds_count", labels)
    return count or 0.0


def run(scenario: Callable[[Server], Awaitable[None]], **server: Any) -> None:
    async def main() -> None:
        await scenario(Server(**server))

    asyncio.run(main())


def test_a_submission_over_the_bound_is_refused_by_the_protocol_without_a_task() -> None:
    async def scenario(server: Server) -> None:
        holder, held = server.connect()
        holder.data_received(SUBMIT)
        await server.settle()
        assert len(server.calls) == 1 and server.calls[0][ADMITTED] is True
        assert server.limit.in_flight == 1

        refused, transport = server.connect()
        observed = refusals_observed()
        refused.data_received(SUBMIT)
        assert refusals_observed() == observed + 1
        # Answered at once, inside the protocol: no task, the app not called.
        assert len(server.state.tasks) == 1 and len(server.calls) == 1
        [(status, headers, body)] = transport.answers()
        assert status == 503
        assert headers[b"retry-after"] == b"3"
        assert headers[b"content-type"] == b"application/json"
        error = ErrorBody.model_validate(orjson.loads(body)).error
        assert error.code == "overloaded"
        assert error.details == {"in_flight": 1, "limit": 1, "retry_after_s": 3}
        assert not transport.closed  # keep-alive: the client retries on the same connection

        server.release.set()
        await server.settle()
        assert [a[0] for a in held.answers()] == [202]
        assert server.limit.in_flight == 0 and not server.state.tasks
        # The retry on the refused connection is admitted now.
        refused.data_received(SUBMIT)
        await server.settle()
        assert [a[0] for a in transport.answers()] == [503, 202]
        assert server.limit.in_flight == 0

    run(scenario, slots=1, max_wait_ms=0)


def test_a_refusal_to_a_client_closing_the_connection_closes_it() -> None:
    async def scenario(server: Server) -> None:
        await server.occupy_the_slot()
        refused, transport = server.connect()
        refused.data_received(
            SUBMIT.replace(b"host: api\r\n", b"host: api\r\nconnection: close\r\n")
        )
        [(status, headers, _)] = transport.answers()
        assert status == 503 and headers[b"connection"] == b"close"
        assert transport.closed
        server.release.set()
        await server.settle()

    run(scenario, slots=1, max_wait_ms=0)


def test_a_waiting_submission_has_no_task_until_a_slot_passes_to_it() -> None:
    async def scenario(server: Server) -> None:
        await server.occupy_the_slot()
        waiting, transport = server.connect()
        waiting.data_received(SUBMIT)
        await server.settle()
        assert len(server.state.tasks) == 1 and not transport.written
        server.release.set()  # the holder answers; its slot passes to the waiting submission
        await server.settle()
        assert [a[0] for a in transport.answers()] == [202]
        assert len(server.calls) == 2 and server.limit.in_flight == 0

    run(scenario, slots=1, max_wait_ms=10_000)


def test_a_wait_that_ends_without_a_slot_is_refused() -> None:
    async def scenario(server: Server) -> None:
        await server.occupy_the_slot()
        waiting, transport = server.connect()
        waiting.data_received(SUBMIT)
        await asyncio.sleep(0.05)  # past admission_max_wait_ms
        [(status, headers, _)] = transport.answers()
        assert status == 503 and headers[b"retry-after"] == b"3"
        assert len(server.calls) == 1
        server.release.set()
        await server.settle()
        assert server.limit.in_flight == 0

    run(scenario, slots=1, max_wait_ms=1)


def test_a_slot_that_comes_to_a_departed_client_goes_on() -> None:
    async def scenario(server: Server) -> None:
        await server.occupy_the_slot()
        gone, _ = server.connect()
        gone.data_received(SUBMIT)
        gone.connection_lost(None)
        server.release.set()
        await server.settle()
        assert len(server.calls) == 1 and server.limit.in_flight == 0
        again, transport = server.connect()
        again.data_received(SUBMIT)
        await server.settle()
        assert [a[0] for a in transport.answers()] == [202]

    run(scenario, slots=1, max_wait_ms=10_000)


def test_other_requests_pass_the_protocol_untouched() -> None:
    async def scenario(server: Server) -> None:
        server.release.set()
        protocol, transport = server.connect()
        protocol.data_received(b"GET /v1/tasks HTTP/1.1\r\nhost: api\r\n\r\n")
        await server.settle()
        assert [a[0] for a in transport.answers()] == [202]
        assert ADMITTED not in server.calls[0] and server.limit.in_flight == 0

    run(scenario, slots=1, max_wait_ms=0)


def test_the_pending_bytes_bound_holds_before_the_app_sees_the_request() -> None:
    async def scenario(server: Server) -> None:
        protocol, transport = server.connect()
        protocol.data_received(SUBMIT)  # 999 bytes waiting + 2 of this body > 1000
        [(status, _, body)] = transport.answers()
        assert status == 503 and not server.calls and not server.state.tasks
        error = ErrorBody.model_validate(orjson.loads(body)).error
        assert error.details["pending_bytes"] == 999
        server.producer.pending_bytes = 0
        server.release.set()
        protocol.data_received(SUBMIT)
        await server.settle()
        assert [a[0] for a in transport.answers()] == [503, 202]

    run(scenario, slots=1, max_wait_ms=0, pending_bytes=999)


def test_an_admitted_submission_is_answered_in_one_write() -> None:
    async def scenario(server: Server) -> None:
        server.release.set()
        protocol, transport = server.connect()
        protocol.data_received(SUBMIT)
        await server.settle()
        assert [a[0] for a in transport.answers()] == [202]
        assert transport.writes == 1  # head and body in one send on the socket
        other, plain = server.connect()
        other.data_received(b"GET /v1/tasks HTTP/1.1\r\nhost: api\r\n\r\n")
        await server.settle()
        assert [a[0] for a in plain.answers()] == [202] and plain.writes == 2
        # A poll of one task, long or not, is answered in one write as well, and through the
        # transport even where the connection's socket is known (the interpreter lock kept).
        ours, client = socket.socketpair()
        try:
            for target in (b"/v1/tasks/t1", b"/v1/tasks/t1?wait=5"):
                poll, polled = server.connect()
                poll.fd = ours.fileno()
                poll.data_received(b"GET " + target + b" HTTP/1.1\r\nhost: api\r\n\r\n")
                await server.settle()
                assert [a[0] for a in polled.answers()] == [202] and polled.writes == 1
            client.setblocking(False)
            with pytest.raises(BlockingIOError):
                client.recv(100)  # nothing went to the socket itself
            # A submission's answer, by contrast, goes to the socket itself (`os.write`).
            submitter = server.protocol_class(server.config, server.state, {})
            untouched = Queued(0)
            submitter.connection_made(untouched)
            submitter.fd = ours.fileno()
            submitter.data_received(SUBMIT)
            await server.settle()
            assert untouched.writes == 0 and client.recv(1000).startswith(b"HTTP/1.1 202")
        finally:
            ours.close()
            client.close()
        events, streamed = server.connect()
        events.data_received(b"GET /v1/tasks/t1/events HTTP/1.1\r\nhost: api\r\n\r\n")
        await server.settle()
        assert streamed.writes == 2  # anything else is written as uvicorn writes it

    run(scenario, slots=1, max_wait_ms=0)


def test_a_head_written_alone_goes_out_within_the_loop_s_turn() -> None:
    """A streamed answer's head does not wait for its first chunk."""

    async def scenario(server: Server) -> None:
        started = asyncio.Event()
        finish = asyncio.Event()

        async def streaming(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            headers = [(b"content-type", b"text/event-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            started.set()
            await finish.wait()
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        server.config.loaded_app = streaming
        protocol, transport = server.connect()
        protocol.data_received(SUBMIT)
        await started.wait()
        await server.settle()
        assert transport.written.startswith(b"HTTP/1.1 200 OK\r\n") and transport.writes == 1
        finish.set()
        await server.settle()
        assert transport.written.endswith(b"0\r\n\r\n")

    run(scenario, slots=1, max_wait_ms=0)


class Queued(Transport):
    """A transport that says it holds `queued` bytes not yet written."""

    def __init__(self, queued: int) -> None:
        super().__init__()
        self.queued = queued

    def get_write_buffer_size(self) -> int:
        return self.queued


def test_an_answer_goes_to_the_socket_itself_unless_the_transport_holds_bytes() -> None:
    ours, client = socket.socketpair()
    loop = asyncio.new_event_loop()
    try:
        idle = Queued(0)
        answer = OneWrite(idle, loop, ours.fileno())
        answer.write(b"head;")
        answer.write(b"body")
        assert client.recv(100) == b"head;body" and idle.writes == 0
        # Bytes still queued in the transport go first: the answer follows them there.
        busy = Queued(10)
        answer = OneWrite(busy, loop, ours.fileno())
        answer.write(b"head;")
        answer.write(b"body")
        assert busy.written == b"head;body" and busy.writes == 1
        closing = Queued(0)
        closing.closed = True
        OneWrite(closing, loop, ours.fileno()).close()
        assert closing.writes == 0  # nothing held, nothing written
    finally:
        loop.close()
        ours.close()
        client.close()
