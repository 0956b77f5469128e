"""Which protocol a worker group uses to share its partitions, and its timeouts under it.

`classic`: librdkafka's cooperative-sticky assignor evens out how many partitions each worker
holds, not its share of each topic, so a worker that joins may take every partition of one
priority lane. `consumer` (Kafka >= 4.0, KIP-848): the brokers' `range` assignor gives each
worker its share of every lane and still moves only what must move; the brokers then time out
a silent member, by the group's `consumer.session.timeout.ms` (45 s unless set), so the worker
sets it to `worker.session_timeout_ms` where the brokers' bounds allow.

`auto` (the default) takes `consumer` where the brokers offer it and the group can have the
workers' session timeout, and `classic` otherwise (an older cluster, or one whose
`group.consumer.min.session.timeout.ms` is above it: failover would be slower than asked).
Kafka moves a group from one protocol to the other as its members change, so workers that
chose differently (say, during an upgrade of the brokers) still share one group.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from mcp.settings import Settings

log = logging.getLogger(__name__)

Protocol = Literal["classic", "consumer"]

SESSION = "consumer.session.timeout.ms"
HEARTBEAT = "consumer.heartbeat.interval.ms"
# What librdkafka refuses for a consumer-protocol member: the group sets these itself.
CLASSIC_ONLY = frozenset(
    {"partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms"}
)


@dataclass(frozen=True)
class BrokerGroups:
    """The brokers' settings for groups of the consumer protocol (their `group.*` configs)."""

    protocols: frozenset[str]
    session_ms: int
    min_session_ms: int
    max_session_ms: int
    min_heartbeat_ms: int
    max_heartbeat_ms: int

    @classmethod
    def of(cls, configs: dict[str, str]) -> BrokerGroups:
        def ms(name: str) -> int:
            return int(configs[f"group.consumer.{name}"])

        return cls(
            protocols=frozenset(
                p.strip() for p in configs["group.coordinator.rebalance.protocols"].split(",")
            ),
            session_ms=ms("session.timeout.ms"),
            min_session_ms=ms("min.session.timeout.ms"),
            max_session_ms=ms("max.session.timeout.ms"),
            min_heartbeat_ms=ms("min.heartbeat.interval.ms"),
            max_heartbeat_ms=ms("max.heartbeat.interval.ms"),
        )


@dataclass(frozen=True)
class Plan:
    protocol: Protocol
    # The group's own configs to set first (None: the brokers' defaults apply).
    group_configs: dict[str, int] | None
    why: str


def plan(
    wanted: Literal["auto", "classic", "consumer"],
    session_ms: int,
    brokers: BrokerGroups | None,
) -> Plan:
    """The protocol for a worker group that should notice a silent worker within `session_ms`;
    `brokers` is None when their settings could not be read."""
    if wanted == "classic":
        return Plan("classic", None, "kafka.group_protocol is classic")
    if brokers is None:
        why = "the brokers' group settings could not be read"
    elif "consumer" not in brokers.protocols:
        why = "the brokers do not offer the consumer protocol"
    elif (session := min(session_ms, brokers.max_session_ms)) < brokers.min_session_ms:
        why = (
            f"the brokers' group.consumer.min.session.timeout.ms ({brokers.min_session_ms} ms) "
            f"is above worker.session_timeout_ms ({session_ms} ms)"
        )
    else:
        # Ten heartbeats a session, as the brokers' defaults have it (45 s, 5 s), within their
        # bounds.
        heartbeat = max(brokers.min_heartbeat_ms, min(session // 10, brokers.max_heartbeat_ms))
        configs = {SESSION: session, HEARTBEAT: heartbeat}
        return Plan("consumer", configs, f"a silent worker times out after {session} ms")
    # Not the workers' timeout: `consumer` keeps the brokers' own, `auto` stays classic.
    if wanted == "consumer":
        return Plan("consumer", None, f"asked for, though {why}")
    return Plan("classic", None, why)


def read_brokers(admin: AdminClient, timeout_s: float) -> BrokerGroups | None:
    """One broker's group settings (every broker of a cluster should have the same)."""
    try:
        brokers = admin.list_topics(timeout=timeout_s).brokers
        resource = ConfigResource(ResourceType.BROKER, str(min(brokers)))
        entries = admin.describe_configs([resource])[resource].result(timeout_s)
        return BrokerGroups.of({name: entry.value for name, entry in entries.items()})
    except (KafkaException, KeyError, ValueError) as exc:
        log.warning("could not read the brokers' group settings: %s", exc)
        return None


def set_group_configs(
    admin: AdminClient, group: str, configs: dict[str, int], timeout_s: float
) -> bool:
    resource = ConfigResource(
        ResourceType.GROUP,
        group,
        incremental_configs=[
            ConfigEntry(name, str(value), incremental_operation=AlterConfigOpType.SET)
            for name, value in configs.items()
        ],
    )
    try:
        admin.incremental_alter_configs([resource])[resource].result(timeout_s)
        return True
    except KafkaException as exc:
        log.warning("could not set %s of group %s: %s", configs, group, exc)
        return False


def under(protocol: Protocol, config: dict[str, Any]) -> dict[str, Any]:
    """A consumer's config (`mcp.kafka.consumer_config`) for a group of this protocol."""
    if protocol == "classic":
        return config
    shared = {k: v for k, v in config.items() if k not in CLASSIC_ONLY}
    return {**shared, "group.protocol": "consumer", "group.remote.assignor": "range"}


def choose_protocol(settings: Settings, group: str) -> Protocol:
    """Decide a worker group's protocol and set the group's timeouts for it, before joining."""
    wanted = settings.kafka.group_protocol
    session_ms = settings.worker.session_timeout_ms
    timeout = settings.kafka.request_timeout_s
    brokers: BrokerGroups | None = None
    admin: AdminClient | None = None
    if wanted != "classic":
        admin = AdminClient(settings.kafka_client_config())
        brokers = read_brokers(admin, timeout)
    chosen = plan(wanted, session_ms, brokers)
    configs = chosen.group_configs
    if configs and admin is not None and not set_group_configs(admin, group, configs, timeout):
        assert brokers is not None  # configs are planned from the brokers' settings
        if wanted == "auto" and brokers.session_ms > session_ms:
            chosen = Plan("classic", None, "the group's session timeout could not be set")
    log.info("group %s: %s protocol (%s)", group, chosen.protocol, chosen.why)
    return chosen.protocol
