"""Traces across processes: one submission makes one trace with the API's, the worker's and
the dispatcher's spans, exported over OTLP as the standard `OTEL_*` variables say, and the
webhook receiver sees the same trace id in `traceparent`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from mcp.names import Topics
from mcp.settings import Settings
from tests.harness import Platform, submit, wait_for, wait_statuses
from tests.mcp.webhooks.conftest import Receiver

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent: str
    links: tuple[tuple[str, str], ...]


class OtlpCollector:
    """An OTLP/HTTP (protobuf) trace endpoint on 127.0.0.1 that keeps every span it gets."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = ExportTraceServiceRequest()
                request.ParseFromString(self.rfile.read(int(self.headers["content-length"])))
                collector.add(request)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    span = Span(
                        attributes.get("service.name", ""),
                        s.name,
                        s.trace_id.hex(),
                        s.span_id.hex(),
                        s.parent_span_id.hex(),
                        tuple((link.trace_id.hex(), link.span_id.hex()) for link in s.links),
                    )
                    with self.lock:
                        self.spans.append(span)

    def named(self, name: str) -> Span:
        with self.lock:
            (span,) = [s for s in self.spans if s.name == name]
        return span

    def names(self) -> set[str]:
        with self.lock:
            return {s.name for s in self.spans}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[OtlpCollector]:
    made = OtlpCollector()
    yield made
    made.close()


def test_one_submission_is_one_trace_that_reaches_the_webhook_receiver(
    settings: Settings, tmp_path: Path, collector: OtlpCollector
) -> None:
    traced = Platform(
        settings,
        tmp_path,
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    receiver = Receiver()
    topics = Topics.of(settings)
    lane, results = topics.tasks("echo"), topics.results
    try:
        traced.api()
        traced.worker("echo")
        traced.dispatcher()
        with traced.client() as client:
            body = {"model": "echo", "action": "generate", "callback_url": receiver.url("/hook")}
            answer = submit(client, body, traceparent=f"00-{TRACE_ID}-{CALLER_SPAN}-01")
            task_id = answer.json()["task_id"]
            wait_statuses(client, [task_id], {"succeeded"}, timeout=60)
        wait_for(lambda: receiver.on("/hook"), 60, "the webhook")
        wanted = {"submit", f"send {lane}", f"process {lane}", "run echo", f"process {results}"}
        wanted.add("POST webhook task.succeeded")
        try:
            wait_for(lambda: wanted <= collector.names(), 30, "every span")
        except AssertionError:
            raise AssertionError(f"{wanted - collector.names()} missing") from None
    finally:
        receiver.close()
        traced.stop()

    submitted = collector.named("submit")
    sent = collector.named(f"send {lane}")
    processed = collector.named(f"process {lane}")
    batch = collector.named("run echo")
    consumed = collector.named(f"process {results}")
    delivered = collector.named("POST webhook task.succeeded")
    assert [s.service for s in (submitted, processed, consumed)] == [
        "autoglm-api",
        "autoglm-worker",
        "autoglm-dispatcher",
    ]
    chain = [submitted, sent, processed, consumed, delivered]
    assert {s.trace_id for s in chain} == {TRACE_ID}
    parents = [s.parent for s in chain]
    assert parents == [CALLER_SPAN, *(s.span_id for s in chain[:-1])]
    # The batch is a trace of its own that links every task it ran.
    assert (TRACE_ID, processed.span_id) in batch.links
    (hook,) = receiver.on("/hook")
    assert hook.headers["traceparent"] == f"00-{TRACE_ID}-{delivered.span_id}-01"
