"""The tracing helpers with the SDK's in-memory exporter: off costs nothing, on makes children
of a `traceparent` and hands on their own."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mcp.settings import Settings
from mcp.telemetry import tracing

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_off_by_default_makes_no_span(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in tracing.ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert not tracing.wanted(Settings())
    assert not tracing.setup("test", Settings())
    with tracing.span("nothing", PARENT) as span:
        assert span is None
    assert tracing.traceparent_of(None, PARENT) == PARENT
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    assert tracing.wanted(Settings())
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not tracing.wanted(Settings())


def test_spans_continue_the_callers_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = InMemorySpanExporter()
    monkeypatch.setattr(tracing, "_enabled", False)
    assert tracing.setup("test", Settings(), exporter=exporter)
    with tracing.span("outer", PARENT, "SERVER") as outer:
        handed_on = tracing.traceparent_of(outer)
        inner = tracing.start("inner", handed_on, "PRODUCER", tracing.kafka("send", "t"))
        assert inner is not None
        inner.end()
    with pytest.raises(ValueError), tracing.span("failing", handed_on):
        raise ValueError("boom")
    linked = tracing.start("batch", links=[tracing.traceparent_of(inner), "garbage"])
    assert linked is not None
    linked.end()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert {s.context.trace_id for n, s in spans.items() if n != "batch"} == {
        int("4bf92f3577b34da6a3ce929d0e0e4736", 16)
    }
    assert spans["outer"].parent is not None
    assert spans["outer"].parent.span_id == int("00f067aa0ba902b7", 16)
    assert spans["inner"].parent.span_id == spans["outer"].context.span_id
    assert spans["inner"].attributes["messaging.system"] == "kafka"
    assert not spans["failing"].status.is_ok
    assert [link.context.span_id for link in spans["batch"].links] == [
        spans["inner"].context.span_id
    ]
    assert tracing.trace_id_of(handed_on) == "4bf92f3577b34da6a3ce929d0e0e4736"
