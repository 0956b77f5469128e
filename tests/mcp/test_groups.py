"""A worker group's protocol: `auto` takes the consumer protocol only where the brokers let the
group time out a silent worker as fast as `worker.session_timeout_ms` asks."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from mcp.groups import HEARTBEAT, SESSION, BrokerGroups, choose_protocol, plan, under
from mcp.settings import Settings

KAFKA_4 = BrokerGroups(
    protocols=frozenset({"classic", "consumer", "streams"}),
    session_ms=45_000,
    min_session_ms=45_000,
    max_session_ms=60_000,
    min_heartbeat_ms=5_000,
    max_heartbeat_ms=15_000,
)
TUNED = BrokerGroups(
    protocols=KAFKA_4.protocols,
    session_ms=10_000,
    min_session_ms=6_000,
    max_session_ms=60_000,
    min_heartbeat_ms=500,
    max_heartbeat_ms=15_000,
)
KAFKA_3 = BrokerGroups(frozenset({"classic"}), 45_000, 45_000, 60_000, 5_000, 15_000)


def test_auto_takes_the_consumer_protocol_with_the_workers_session_timeout() -> None:
    chosen = plan("auto", 10_000, TUNED)
    assert chosen.protocol == "consumer"
    assert chosen.group_configs == {SESSION: 10_000, HEARTBEAT: 1_000}


def test_auto_keeps_classic_where_failover_would_be_slower_than_asked() -> None:
    # Kafka's own defaults: no consumer group times out a member in under 45 s.
    chosen = plan("auto", 10_000, KAFKA_4)
    assert chosen.protocol == "classic"
    assert "45000" in chosen.why


@pytest.mark.parametrize("brokers", [KAFKA_3, None], ids=["no-consumer-protocol", "unknown"])
def test_auto_keeps_classic_where_the_brokers_do_not_offer_it(
    brokers: BrokerGroups | None,
) -> None:
    assert plan("auto", 10_000, brokers).protocol == "classic"


def test_the_heartbeat_stays_within_the_brokers_bounds() -> None:
    assert plan("auto", 6_000, TUNED).group_configs == {SESSION: 6_000, HEARTBEAT: 600}
    assert plan("auto", 50_000, KAFKA_4).group_configs == {SESSION: 50_000, HEARTBEAT: 5_000}
    # Longer than the brokers allow: their longest.
    assert plan("auto", 600_000, TUNED).group_configs == {SESSION: 60_000, HEARTBEAT: 6_000}


def test_an_explicit_choice_is_kept() -> None:
    assert plan("classic", 10_000, TUNED).protocol == "classic"
    forced = plan("consumer", 10_000, KAFKA_4)
    assert (forced.protocol, forced.group_configs) == ("consumer", None)


def _group_configs(settings: Settings, group: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    resource = ConfigResource(ResourceType.GROUP, group)
    entries = admin.describe_configs([resource])[resource].result(10)
    return {name: entry.value for name, entry in entries.items()}


@pytest.mark.integration
def test_auto_sets_the_groups_timeouts_on_real_brokers(settings: Settings) -> None:
    # The test brokers allow sessions from 6 s (`deploy/kafka/kafka.sh`).
    group = f"{settings.kafka.topic_prefix}autoglm.worker.echo"
    assert choose_protocol(settings, group) == "consumer"
    configs = _group_configs(settings, group)
    assert configs[SESSION] == str(settings.worker.session_timeout_ms)
    assert configs[HEARTBEAT] == str(settings.worker.session_timeout_ms // 10)


@pytest.mark.integration
def test_auto_falls_back_to_classic_on_real_brokers_below_their_minimum(
    settings: Settings,
) -> None:
    quick = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"session_timeout_ms": 3_000})}
    )
    group = f"{settings.kafka.topic_prefix}autoglm.worker.quick"
    assert choose_protocol(quick, group) == "classic"
    assert _group_configs(settings, group)[SESSION] != "3000"


def test_a_consumer_protocol_member_leaves_the_timeouts_to_its_group() -> None:
    config = {
        "group.id": "g",
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 500,
        "max.poll.interval.ms": 3_600_000,
    }
    assert under("classic", config) == config
    assert under("consumer", config) == {
        "group.id": "g",
        "max.poll.interval.ms": 3_600_000,
        "group.protocol": "consumer",
        "group.remote.assignor": "range",
    }
