"""An API started before Kafka is reachable turns ready on its own once the brokers answer.

Nothing submits meanwhile (an unready pod gets no traffic), so the topics and the transactional
producer must be prepared in the background; `/healthz` stays 200 all along.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.harness import Platform, PrivateKafka, submit, wait_for

pytestmark = pytest.mark.integration


def test_api_started_before_kafka_turns_ready(platform: Platform, tmp_path: Path) -> None:
    broker = PrivateKafka(tmp_path / "kafka")
    early = platform.variant(kafka={"bootstrap_servers": broker.bootstrap})
    try:
        api = early.api(probe=None)

        def answers() -> bool:
            assert api.alive, api.log()
            try:
                return httpx.get(f"{early.url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(answers, 60, "the API to answer")
        with early.client() as client:
            unready = client.get("/readyz")
            assert unready.status_code == 503, unready.text
            assert unready.json()["checks"]["kafka"] is False
            assert unready.json()["checks"]["redis"] is True
            broker.up()
            wait_for(lambda: client.get("/readyz").status_code == 200, 90, "ready", interval=0.5)
            assert client.get("/healthz").status_code == 200
            accepted = submit(client, {"model": "echo", "action": "generate", "payload": {}})
            assert accepted.status_code == 202, accepted.text
        assert "topics prepared" in api.log()
    finally:
        early.stop()
        broker.down()
