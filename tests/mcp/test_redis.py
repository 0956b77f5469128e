"""Redis is real in the test session too."""

from __future__ import annotations

import pytest
import redis

pytestmark = pytest.mark.integration


def test_redis_answers(redis_client: redis.Redis, namespace: str) -> None:
    key = f"{namespace}probe"
    redis_client.set(key, "1", ex=10)
    assert redis_client.get(key) == b"1"
    info = redis_client.info("server")
    assert int(str(info["redis_version"]).split(".")[0]) >= 6
