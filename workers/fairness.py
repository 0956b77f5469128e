"""Which read task runs next: priority first, then a weighted round robin across projects.

A model's tasks live in three lane topics, one per priority (`tasks.<model>.high`,
`tasks.<model>`, `tasks.<model>.low`), and within a lane a project's tasks go to the partition
its name hashes to (`mcp.names.lane_partition`). A worker reads a few records of each partition
into a `FairQueue` and pauses a partition while it has `cap` records waiting, so a flooded
partition cannot crowd the others out of the consumer's fetches, and resumes it as they leave.

`take` hands out work from the highest priority that has any; inside a priority it picks among
the partitions' oldest records by stride scheduling: each project advances a pass value by
1/weight per task, the lowest pass goes next, and a project that was idle re-enters at the
current minimum (it cannot bank credit while away). Records of one partition leave in offset
order, so committed offsets stay a contiguous prefix of what was run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

J = TypeVar("J")
Key = tuple[str, int]

RANKS = {"high": 0, "normal": 1, "low": 2}


@dataclass
class _Partition(Generic[J]):
    rank: int
    jobs: deque[tuple[str, J]] = field(default_factory=deque)


class FairQueue(Generic[J]):
    def __init__(self, weight: Callable[[str], float] = lambda _: 1.0) -> None:
        self.weight = weight
        self._partitions: dict[Key, _Partition[J]] = {}
        self._pass: dict[str, float] = {}
        self._count: dict[str, int] = {}  # waiting jobs per project
        self._last: dict[str, int] = {}  # turn a project was last served: breaks ties
        self._turn = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, key: Key, priority: str, project: str, job: J) -> None:
        part = self._partitions.get(key)
        if part is None:
            part = self._partitions[key] = _Partition(RANKS.get(priority, RANKS["normal"]))
        if not self._count.get(project):
            self._pass[project] = max(self._pass.get(project, 0.0), self._floor())
        part.jobs.append((project, job))
        self._count[project] = self._count.get(project, 0) + 1
        self._size += 1

    def full(self, cap: int) -> set[Key]:
        """Partitions with `cap` or more jobs waiting."""
        return {key for key, part in self._partitions.items() if len(part.jobs) >= cap}

    def waiting(self, key: Key) -> int:
        part = self._partitions.get(key)
        return len(part.jobs) if part else 0

    def take(self, limit: int, batch_key: Callable[[J], Hashable] | None = None) -> list[J]:
        """Up to `limit` jobs in the order they should run; with `batch_key`, only jobs that
        share the first one's key (others stay, in place, for a later batch)."""
        out: list[J] = []
        skipped: set[Key] = set()
        first: Hashable = None
        while len(out) < limit:
            key = self._next(skipped)
            if key is None:
                break
            part = self._partitions[key]
            project, job = part.jobs[0]
            if batch_key is not None:
                mine = batch_key(job)
                if out and mine != first:
                    skipped.add(key)
                    continue
                first = mine
            part.jobs.popleft()
            self._count[project] -= 1
            self._size -= 1
            self._pass[project] += 1.0 / max(self.weight(project), 1e-6)
            self._turn += 1
            self._last[project] = self._turn
            out.append(job)
        return out

    def drop(self, keys: Iterable[Key] | None = None) -> list[J]:
        """Forget the jobs of these partitions (all when None); they are read again later."""
        chosen = list(self._partitions) if keys is None else [k for k in keys]
        dropped: list[J] = []
        for key in chosen:
            part = self._partitions.pop(key, None)
            if part is not None:
                for project, job in part.jobs:
                    self._count[project] -= 1
                    dropped.append(job)
                self._size -= len(part.jobs)
        return dropped

    def _next(self, skipped: set[Key]) -> Key | None:
        best: tuple[int, float, int, int] | None = None
        chosen: Key | None = None
        for order, (key, part) in enumerate(self._partitions.items()):
            if not part.jobs or key in skipped:
                continue
            project = part.jobs[0][0]
            rank = (part.rank, self._pass[project], self._last.get(project, 0), order)
            if best is None or rank < best:
                best, chosen = rank, key
        return chosen

    def _floor(self) -> float:
        """The lowest pass among projects with waiting jobs: where a returning project starts."""
        return min((self._pass[p] for p, n in self._count.items() if n), default=0.0)
