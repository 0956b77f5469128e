"""Promise 2 when Kafka itself is SIGKILLed mid-work and comes back: one result per task."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ROOT, Platform, committed_results, submit, submit_echo, wait_for

pytestmark = pytest.mark.integration


class PrivateKafka:
    """A broker of this test's own, on its own port and data directory, so it can be killed."""

    def __init__(self, data: Path) -> None:
        self.port = _port_pair()
        self.data = data
        self.bootstrap = f"127.0.0.1:{self.port}"

    def _script(self, command: str) -> None:
        subprocess.run(
            [
                str(ROOT / "deploy" / "kafka" / "kafka.sh"),
                command,
                "--port",
                str(self.port),
                "--data",
                str(self.data),
            ],
            check=True,
            capture_output=True,
        )

    def up(self) -> None:
        self._script("up")

    def kill(self) -> None:
        pid = int((self.data / "kafka.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not _alive(pid), 30, "the broker to die")

    def down(self) -> None:
        self._script("down")


def _port_pair() -> int:
    """A port P with P + 1 (the controller's) also free, below the kernel's ephemeral range:
    there no outgoing connection takes P + 1 in the meantime, nor P while the broker restarts."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(20000, low - 2)
        if _bindable(port) and _bindable(port + 1):
            return port
    raise AssertionError("no free port pair below the ephemeral range")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def private_kafka(tmp_path: Path) -> Iterator[PrivateKafka]:
    broker = PrivateKafka(tmp_path / "kafka")
    broker.up()
    yield broker
    broker.down()


def test_broker_sigkill_mid_work_keeps_exactly_one_result(
    platform: Platform, private_kafka: PrivateKafka
) -> None:
    platform = platform.variant(kafka={"bootstrap_servers": private_kafka.bootstrap})
    try:
        platform.api()
        worker = platform.worker("echo", "0")
        with platform.client() as client:
            task_ids = submit_echo(client, 60, sleep_ms=40)
            wait_for(lambda: len(committed_results(platform.settings)) >= 5, 60, "first results")
            private_kafka.kill()
            private_kafka.up()
            wait_for(
                lambda: len(committed_results(platform.settings)) >= len(task_ids),
                180,
                "all results",
            )
            assert worker.alive, worker.log()
            after = submit(
                client, {"model": "echo", "action": "generate", "payload": {"after": True}}
            )
            assert after.status_code == 202, after.text
        counts = Counter(r.task_id for r in committed_results(platform.settings))
        assert set(task_ids) <= set(counts)
        assert max(counts.values()) == 1, {t: n for t, n in counts.items() if n > 1}
    finally:
        platform.stop()
