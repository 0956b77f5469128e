"""One platform (API, echo and glm-tiny workers, dispatcher, a webhook secret) for the SDK tests:
starting a glm-tiny worker is the slow part, so the package's tests share it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import drop_topics, make_settings
from tests.harness import Platform
from tests.mcp.webhooks.conftest import SECRET


@pytest.fixture(scope="package")
def shared(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    namespace = f"t{uuid.uuid4().hex[:10]}."
    settings = make_settings(
        kafka_bootstrap,
        redis_url,
        namespace,
        webhooks={"allow_networks": ["127.0.0.0/8"], "secrets": {"default": [SECRET]}},
    )
    platform = Platform(settings, tmp_path_factory.mktemp("sdk-platform"))
    try:
        platform.api()
        platform.worker("echo", "0")
        platform.worker("glm-tiny", "0")
        platform.dispatcher()
        yield platform
    finally:
        platform.stop()
        drop_topics(kafka_bootstrap, namespace)
