"""Promise 3 under fire: Redis dies mid-work and comes back empty; nothing is lost or doubled."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.harness import (
    Platform,
    committed_results,
    free_port,
    submit_echo,
    wait_for,
    wait_statuses,
)

pytestmark = pytest.mark.integration


class PrivateRedis:
    """A redis-server of this test's own, so that it can be killed."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not on PATH (make test installs it)"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        wait_for(lambda: _pings(client), 10, "private redis")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


def test_worker_and_projector_ride_out_a_redis_crash(
    platform: Platform, private_redis: PrivateRedis
) -> None:
    platform = platform.variant(redis={"url": private_redis.url})
    try:
        platform.api()
        worker = platform.worker("echo", "0")
        with platform.client() as client:
            before = submit_echo(client, 20, sleep_ms=20)
            private_redis.kill()  # mid-work: claims, streams and projections now fail
            time.sleep(1.5)
            private_redis.start()  # back, and empty
            during = submit_echo(client, 10)
            wait_for(lambda: len(committed_results(platform.settings)) >= 30, 90, "all results")
            assert worker.alive, worker.log()
            # What Redis saw after it came back is projected again, by worker and projector.
            wait_statuses(client, during, {"succeeded"}, timeout=30)
        counts: dict[str, int] = {}
        for result in committed_results(platform.settings):
            counts[result.task_id] = counts.get(result.task_id, 0) + 1
        assert set(counts) == set(before) | set(during)
        assert set(counts.values()) == {1}
    finally:
        platform.stop()
