"""CPU time and memory of the processes a benchmark measures, from /proc. CPU time is steadier
than wall time on a machine whose cores the servers, Kafka, Redis and the load generator all
share."""

from __future__ import annotations

import os
from pathlib import Path

STATE = Path.home() / ".cache" / "autoglm-mcp"


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident set size of a process, in MB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def family(pid: int) -> list[int]:
    """A process and its descendants (an API started with `--processes N` and its slots)."""
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pids
    for child in children:
        pids += family(int(child))
    return pids


def server_pid(kind: str, address: str) -> int | None:
    """The bench's Kafka broker or Redis server (`kafka` / `redis`) at `address`, from the pid
    file deploy/'s scripts write."""
    port = address.rsplit(":", 1)[1].split("/")[0]
    name = f"kafka-data-{port}/kafka.pid" if kind == "kafka" else f"redis-{port}/redis.pid"
    try:
        return int((STATE / name).read_text().strip())
    except (OSError, ValueError):
        return None


class CpuMeter:
    """CPU seconds used by named groups of processes between `start` and `stop`."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self._before: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        return {name: sum(cpu_s(pid) for pid in pids) for name, pids in self.groups.items()}

    def start(self) -> None:
        self._before = self._now()

    def stop(self) -> dict[str, float]:
        return {name: used - self._before[name] for name, used in self._now().items()}
