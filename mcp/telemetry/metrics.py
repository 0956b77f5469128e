"""Shared pieces of every process's Prometheus metrics: the `/metrics` server, buckets, labels.

Naming follows Prometheus conventions: `autoglm_` prefix, base units (`_seconds`, `_bytes`,
`_ratio`), `_total` for counters. Labels are bounded: model, action, outcome, error code, status
class, topic and partition; never a task id or a URL.
"""

from __future__ import annotations

import logging
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

log = logging.getLogger(__name__)

# From a millisecond (a quick echo) to ten minutes (a long generation or a task's queue wait).
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def status_class(status_code: int | None) -> str:
    """`2xx`…`5xx`, or `none` when there was no HTTP answer at all."""
    if status_code is None:
        return "none"
    return f"{status_code // 100}xx"


def serve(port: int | None, host: str = "0.0.0.0") -> int | None:
    """Serve this process's `/metrics` on `port` (0: any free port); the port, or None."""
    if port is None:
        return None
    try:
        server, _thread = start_http_server(port, host)
    except OSError as exc:  # the process's work matters more than its metrics
        log.error("cannot serve metrics on %s:%d (%s); running without them", host, port, exc)
        return None
    bound = int(_port_of(server))
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return bound


def _port_of(server: WSGIServer) -> int:
    return int(server.server_address[1])
