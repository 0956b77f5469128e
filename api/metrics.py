"""Prometheus metrics of the API process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
