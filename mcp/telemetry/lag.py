"""Consumer lag from Kafka's own offsets: the group's committed offset against the last stable
offset (what a `read_committed` consumer can reach) of each partition.

Two admin requests answer for any number of partitions, so this is cheap whatever the backlog.
The lag counts records a worker runs (a worker commits its lowest unfinished offset) and the
transactions' commit markers, which take an offset each: a partition drained after a commit of
the API still shows 1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mcp.settings import Settings

log = logging.getLogger(__name__)

Key = tuple[str, int]


class GroupLag:
    def __init__(self, settings: Settings, timeout_s: float = 5.0) -> None:
        self.admin = AdminClient(settings.kafka_client_config())
        self.timeout_s = timeout_s

    def measure(self, group: str, partitions: Iterable[Key]) -> dict[Key, int]:
        """Lag per partition of `group` (a partition without a committed offset counts from its
        earliest record)."""
        tps = [TopicPartition(t, p) for t, p in partitions]
        if not tps:
            return {}
        timeout = self.timeout_s
        request = [ConsumerGroupTopicPartitions(group, tps)]
        committed_f = self.admin.list_consumer_group_offsets(request, request_timeout=timeout)
        level = IsolationLevel.READ_COMMITTED
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        ends = self._offsets(dict.fromkeys(tps, latest), level)
        committed: dict[Key, int] = {}
        for future in committed_f.values():
            for tp in future.result(timeout).topic_partitions or []:
                committed[(tp.topic, tp.partition)] = tp.offset
        fresh = [tp for tp in tps if committed.get((tp.topic, tp.partition), -1) < 0]
        earliest = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
        starts = self._offsets(dict.fromkeys(fresh, earliest), level) if fresh else {}
        lag: dict[Key, int] = {}
        for key, end in ends.items():
            done = committed.get(key, -1)
            base = done if done >= 0 else starts.get(key, end)
            lag[key] = max(0, end - base)
        return lag

    def _offsets(
        self, specs: dict[TopicPartition, OffsetSpec], level: IsolationLevel
    ) -> dict[Key, int]:
        futures = self.admin.list_offsets(
            specs, isolation_level=level, request_timeout=self.timeout_s
        )
        return {
            (tp.topic, tp.partition): int(f.result(self.timeout_s).offset)
            for tp, f in futures.items()
        }


class LagCollector(Collector):
    """A consumer-lag gauge per partition, asked of Kafka at each scrape (two admin requests,
    off any consume loop). `labels` are constant labels (the worker's model)."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        group: str,
        partitions: Callable[[], Iterable[Key]],
        labels: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.group = group
        self.partitions = partitions
        self.labels = labels or {}
        self.lag = GroupLag(settings)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            self.name,
            f"Records past the committed offset of consumer group {self.group}, per partition",
            labels=[*self.labels, "topic", "partition"],
        )
        try:
            measured = self.lag.measure(self.group, self.partitions())
        except Exception as exc:
            log.warning("consumer lag unavailable: %s", exc)
            measured = {}
        for (topic, partition), lag in sorted(measured.items()):
            family.add_metric([*self.labels.values(), topic, str(partition)], lag)
        yield family
