"""The dispatcher's Prometheus series: each attempt's outcome and latency, the schedule's size
in Redis (scheduled, due, dead) and the attempts in flight per destination.

Destinations are unbounded in principle, so `in_flight` names the busiest `TOP_HOSTS` and adds
the rest up under `other`; the schedule gauges are read from Redis at each scrape, at most
`MAX_DESTINATIONS` destinations' due sets.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator

import redis
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from mcp.names import Keys
from mcp.redis_client import connect_sync
from mcp.settings import Settings
from mcp.telemetry.metrics import LATENCY_BUCKETS, status_class
from mcp.webhooks.sender import Attempt

log = logging.getLogger(__name__)

TOP_HOSTS = 20
MAX_DESTINATIONS = 500

DELIVERIES = Counter(
    "autoglm_webhook_deliveries_total",
    "Webhook attempts by outcome (delivered, retry, dead) and the receiver's status class",
    ["outcome", "status_class"],
)
DELIVERY_SECONDS = Histogram(
    "autoglm_webhook_delivery_seconds",
    "Duration of one webhook attempt, by outcome",
    ["outcome"],
    buckets=LATENCY_BUCKETS,
)


def observe_attempt(attempt: Attempt, gave_up: bool, seconds: float) -> None:
    outcome = "dead" if gave_up else attempt.outcome
    if outcome == "stop":
        outcome = "dead"
    DELIVERIES.labels(outcome, status_class(attempt.status_code)).inc()
    DELIVERY_SECONDS.labels(outcome).observe(seconds)


class ScheduleCollector(Collector):
    """Gauges read at scrape time: scheduled, due and dead deliveries; attempts in flight."""

    def __init__(self, settings: Settings, host_load: Callable[[], dict[str, int]]) -> None:
        self.keys = Keys.of(settings)
        self.redis = connect_sync(settings, socket_timeout=2)
        self.host_load = host_load

    def collect(self) -> Iterator[GaugeMetricFamily]:
        scheduled = GaugeMetricFamily(
            "autoglm_webhook_scheduled", "Deliveries waiting in the schedule (due or later)"
        )
        due = GaugeMetricFamily("autoglm_webhook_due", "Deliveries due now and not yet attempted")
        dead = GaugeMetricFamily("autoglm_webhook_dead", "Deliveries given up on")
        try:
            counts = self._counts(time.time())
        except redis.RedisError as exc:
            log.warning("webhook schedule gauges unavailable: %s", exc)
        else:
            scheduled.add_metric([], counts[0])
            due.add_metric([], counts[1])
            dead.add_metric([], counts[2])
        yield scheduled
        yield due
        yield dead
        in_flight = GaugeMetricFamily(
            "autoglm_webhook_in_flight",
            f"Attempts in flight per destination (the {TOP_HOSTS} busiest; the rest as other)",
            labels=["host"],
        )
        for host, n in bounded(self.host_load()).items():
            in_flight.add_metric([host], n)
        yield in_flight

    def _counts(self, now: float) -> tuple[int, int, int]:
        keys = self.keys
        pipe = self.redis.pipeline(transaction=False)
        for shard in range(keys.shards):
            pipe.zrange(keys.webhook_schedule(shard), 0, MAX_DESTINATIONS - 1)
        queues = [
            keys.webhook_due(h.decode() if isinstance(h, bytes) else str(h), shard)
            for shard, found in enumerate(pipe.execute())
            for h in found
        ]
        pipe = self.redis.pipeline(transaction=False)
        for queue in queues:
            pipe.zcard(queue)
            pipe.zcount(queue, "-inf", now)
        pipe.zcard(keys.webhook_dead)
        replies = pipe.execute()
        return sum(replies[0:-1:2]), sum(replies[1:-1:2]), int(replies[-1])


def bounded(load: dict[str, int]) -> dict[str, int]:
    busiest = Tally(load).most_common()
    out = dict(busiest[:TOP_HOSTS])
    rest = sum(n for _, n in busiest[TOP_HOSTS:])
    if rest:
        out["other"] = rest
    return out


def install(settings: Settings, host_load: Callable[[], dict[str, int]]) -> None:
    REGISTRY.register(ScheduleCollector(settings, host_load))
