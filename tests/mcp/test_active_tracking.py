"""`mcp.active.track`: the projection's changes to the `active:<project>` sets, as few Redis
commands as their order allows."""

from __future__ import annotations

from typing import Any

from mcp.active import track
from mcp.names import Keys
from mcp.settings import Settings
from schemas import TaskStatus

Q, R, S = TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.SUCCEEDED


class Pipe:
    """Records the commands queued on it."""

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []

    def zadd(self, key: str, members: dict[str, float], nx: bool = False) -> None:
        self.commands.append(("zadd", key, dict(members), nx))

    def zrem(self, key: str, *members: str) -> None:
        self.commands.append(("zrem", key, *members))


def test_a_commit_s_submissions_are_one_zadd() -> None:
    keys = Keys.of(Settings())
    pipe = Pipe()
    track(pipe, keys, [("p", f"t{i}", Q, float(i)) for i in range(5)])
    members = {f"t{i}": float(i) for i in range(5)}
    assert pipe.commands == [("zadd", keys.active("p"), members, True)]


def test_runs_of_one_kind_and_project_are_merged_in_order() -> None:
    keys = Keys.of(Settings())
    pipe = Pipe()
    updates = [
        ("p", "a", Q, 1.0),
        ("p", "a", Q, 9.0),  # NX: the first score stands
        ("p", "b", R, 2.0),  # running changes nothing
        ("p", "c", S, 0.0),
        ("p", "d", S, 0.0),
        ("o", "e", Q, 3.0),
        ("p", "f", Q, 4.0),
    ]
    track(pipe, keys, updates)
    assert pipe.commands == [
        ("zadd", keys.active("p"), {"a": 1.0}, True),
        ("zrem", keys.active("p"), "c", "d"),
        ("zadd", keys.active("o"), {"e": 3.0}, True),
        ("zadd", keys.active("p"), {"f": 4.0}, True),
    ]
