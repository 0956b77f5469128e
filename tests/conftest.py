"""Shared fixtures. Integration tests need real Kafka, Redis and S3: `make test` starts them.

A missing service is a failure, never a skip: the promises are only proven against the real thing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import cast
from urllib.parse import urlparse

import pytest
import redis
from confluent_kafka.admin import AdminClient

from mcp.settings import Settings
from tests.harness import Platform, PrivateRedis

KAFKA = os.environ.get("AUTOGLM_TEST_KAFKA", "127.0.0.1:19092")
REDIS = os.environ.get("AUTOGLM_TEST_REDIS", "redis://127.0.0.1:16379/0")
S3 = os.environ.get("AUTOGLM_TEST_S3", "http://127.0.0.1:19100")
# `make test-cluster` runs a part of the suite on a Redis Cluster (AUTOGLM_TEST_REDIS names a node).
REDIS_CLUSTER = os.environ.get("AUTOGLM_TEST_REDIS_CLUSTER", "") == "1"
# The credentials and bucket that deploy/s3/s3proxy.sh starts its server with.
S3_BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY = "autoglm", "autoglm", "autoglm-secret"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    host, port = KAFKA.rsplit(":", 1)
    if not _reachable(host, int(port)):
        pytest.fail(f"Kafka is not reachable at {KAFKA}; run `make test` (it starts it)")
    return KAFKA


@pytest.fixture(scope="session")
def redis_url() -> str:
    parsed = urlparse(REDIS)
    if not _reachable(parsed.hostname or "127.0.0.1", parsed.port or 6379):
        pytest.fail(f"Redis is not reachable at {REDIS}; run `make test` (it starts it)")
    return REDIS


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    parsed = urlparse(S3)
    if not _reachable(parsed.hostname or "127.0.0.1", parsed.port or 80):
        pytest.fail(f"the S3 server is not reachable at {S3}; run `make test` (it starts it)")
    return S3


def s3_blobs(endpoint: str, namespace: str) -> dict[str, object]:
    """The `blobs` settings section for the test S3 server, keys under this test's namespace."""
    return {
        "backend": "s3",
        "key_prefix": namespace.rstrip("."),
        "s3": {
            "endpoint": endpoint,
            "bucket": S3_BUCKET,
            "access_key_id": S3_ACCESS_KEY,
            "secret_access_key": S3_SECRET_KEY,
        },
    }


@pytest.fixture
def namespace(kafka_bootstrap: str) -> Iterator[str]:
    """A fresh prefix for topics, groups and keys, so tests never see each other's data."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    yield prefix
    drop_topics(kafka_bootstrap, prefix)


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str, namespace: str) -> Settings:
    return make_settings(kafka_bootstrap, redis_url, namespace)


def drop_topics(bootstrap: str, namespace: str) -> None:
    """Delete a test's topics, so that a long session does not pile partitions on the broker."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(namespace)]
    if mine:
        for future in admin.delete_topics(mine, operation_timeout=30).values():
            try:
                future.result(timeout=30)
            except Exception:  # best effort: a leftover topic costs a little, nothing more
                pass


def make_settings(kafka: str, redis_url: str, namespace: str, **overrides: object) -> Settings:
    data: dict[str, object] = {
        "dev_mode": True,
        "instance_id": namespace.rstrip("."),
        "kafka": {"bootstrap_servers": kafka, "topic_prefix": namespace, "partitions": 2},
        "redis": {"url": redis_url, "key_prefix": namespace, "cluster": REDIS_CLUSTER},
        "webhooks": {"allow_networks": ["127.0.0.0/8", "::1/128"]},
        "blobs": {"key_prefix": namespace.rstrip(".")},
    }
    data.update(overrides)
    return Settings.model_validate(data)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = (
        cast(redis.Redis, redis.RedisCluster.from_url(redis_url))
        if REDIS_CLUSTER
        else redis.Redis.from_url(redis_url)
    )
    yield client
    client.close()


@pytest.fixture
def platform(
    settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Platform]:
    """API, workers and dispatcher as real processes on this test's own namespace."""
    plat = Platform(settings, tmp_path)
    yield plat
    plat.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        # Straight to the terminal: output captured in teardown is not shown for a failed call.
        capture = request.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            for proc in plat.all_procs():
                print(f"===== {proc.name} =====\n{proc.log()[-6000:]}", flush=True)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()
