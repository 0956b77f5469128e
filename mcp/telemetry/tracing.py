"""OpenTelemetry traces: one trace per task, from the submitting request to its webhook.

The hops (submit → Kafka produce → worker process → result → webhook attempt) pass the W3C
`traceparent` on: in the task (`AsyncTask.trace`), in Kafka record headers, in the webhook
delivery and in the webhook's HTTP request. Off by default, and then no OpenTelemetry object is
made at all: `span()` yields None after one check of a module flag.

Exporting is the OTel SDK's OTLP exporter, configured by the standard `OTEL_*` variables
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `…_HEADERS`,
`OTEL_SERVICE_NAME`, `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_TRACES_SAMPLER`…).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from mcp.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, SpanContext, SpanKind

log = logging.getLogger(__name__)

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
Attributes = Mapping[str, str | int | float | bool]

_enabled = False


def enabled() -> bool:
    return _enabled


def wanted(settings: Settings) -> bool:
    """On by setting or by an OTLP endpoint in the environment; `OTEL_SDK_DISABLED` wins."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return settings.telemetry.tracing or any(os.environ.get(v) for v in ENDPOINT_VARIABLES)


def setup(service: str, settings: Settings, exporter: SpanExporter | None = None) -> bool:
    """Install a tracer provider for this process when tracing is wanted (or `exporter` given:
    tests pass the SDK's in-memory exporter); True when spans will be made."""
    global _enabled
    if exporter is None and not wanted(settings):
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME") or f"autoglm-{service}",
            "service.instance.id": settings.instance_id,
        }
    )
    provider = TracerProvider(resource=resource)
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _enabled = True
    log.info("tracing on: %s", resource.attributes["service.name"])
    return True


def _kind(name: str) -> SpanKind:
    from opentelemetry.trace import SpanKind

    return SpanKind[name]


def context_of(traceparent: str | None) -> Any:
    """The OTel context a `traceparent` names (an empty one for None or garbage)."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {"traceparent": traceparent} if traceparent else {}
    return TraceContextTextMapPropagator().extract(carrier)


def span_context_of(traceparent: str | None) -> SpanContext | None:
    from opentelemetry import trace

    span_context = trace.get_current_span(context_of(traceparent)).get_span_context()
    return span_context if span_context.is_valid else None


def start(
    name: str,
    parent: str | None = None,
    kind: str = "INTERNAL",
    attributes: Attributes | None = None,
    links: Sequence[str | None] = (),
) -> Span | None:
    """A started span (end it yourself), child of `parent` (a traceparent), or None when off."""
    if not _enabled:
        return None
    from opentelemetry import trace
    from opentelemetry.trace import Link

    linked: list[Link] = []
    for traceparent in links:
        span_context = span_context_of(traceparent)
        if span_context is not None:
            linked.append(Link(span_context))
    return trace.get_tracer("autoglm").start_span(
        name, context_of(parent), _kind(kind), dict(attributes or {}), linked
    )


@contextmanager
def span(
    name: str,
    parent: str | None = None,
    kind: str = "INTERNAL",
    attributes: Attributes | None = None,
) -> Iterator[Span | None]:
    """`start` as a context manager: ends the span, records an escaping error on it."""
    current = start(name, parent, kind, attributes)
    if current is None:
        yield None
        return
    try:
        yield current
    except BaseException as exc:
        current.record_exception(exc)
        from opentelemetry.trace import Status, StatusCode

        current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        current.end()


def traceparent_of(current: Span | None, fallback: str | None = None) -> str | None:
    """The `traceparent` that makes the next hop a child of `current` (else `fallback`)."""
    if current is None:
        return fallback
    ctx = current.get_span_context()
    if not ctx.is_valid:
        return fallback
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a `traceparent` (for logs), or None."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def kafka(operation: str, topic: str, **extra: str | int) -> dict[str, str | int]:
    """Messaging semantic-convention attributes of a Kafka span."""
    return {
        "messaging.system": "kafka",
        "messaging.operation.type": operation,
        "messaging.destination.name": topic,
        **extra,
    }


def error(current: Span | None, code: str) -> None:
    """Mark `current` failed with a platform error code."""
    if current is None:
        return
    from opentelemetry.trace import Status, StatusCode

    current.set_attribute("error.type", code)
    current.set_status(Status(StatusCode.ERROR, code))
