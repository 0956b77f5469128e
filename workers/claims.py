"""Starting an attempt of each task of a batch: the claim in Redis, and the verdicts that
settle a task without running it (expired, cancelled, already terminal, out of attempts)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mcp.settings import Settings
from mcp.store import SyncTaskStore
from mcp.telemetry.logs import task_fields
from schemas import TaskStatus, utcnow
from workers.backends.base import TaskContext
from workers.lanes import Key, Lane
from workers.outcome import Outcome
from workers.streams import TokenStreams

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Job(TaskContext):
    """A task on its way through the worker, and the record it came from."""

    key: Key = ("", -1)
    offset: int = -1
    lane: Lane | None = None


# A job settled without running: the outcome to publish, or None when its result was
# published already and only its record is done with.
Settled = tuple[Job, Outcome | None]


class Claims:
    def __init__(
        self, settings: Settings, store: SyncTaskStore, streams: TokenStreams, worker_id: str
    ) -> None:
        self.settings = settings
        self.store = store
        self.streams = streams
        self.worker_id = worker_id

    def claim(self, batch: list[Job]) -> tuple[list[Job], list[Settled]]:
        """The jobs to run, each with its attempt number, and those settled here, in the
        batch's order with the expired ones first."""
        now = utcnow()
        live: list[Job] = []
        settled: list[Settled] = []
        for job in batch:
            if job.task.expires_at < now:
                settled.append((job, Outcome(job.task, TaskStatus.EXPIRED, job.task.attempt)))
            else:
                live.append(job)
        jobs: list[Job] = []
        records = [f"{job.key[0]}:{job.key[1]}@{job.offset}" for job in live]
        verdicts = self.store.claim([job.task for job in live], self.worker_id, records)
        for job, (verdict, attempt) in zip(live, verdicts, strict=True):
            task = job.task
            if verdict == "cancelled":
                settled.append((job, Outcome(task, TaskStatus.CANCELLED, attempt)))
            elif verdict == "terminal":
                log.info(
                    "task %s already finished; skipping", task.task_id, extra=task_fields(task)
                )
                settled.append((job, None))
            elif attempt > self.settings.worker.max_attempts:
                message = f"gave up after {attempt - 1} attempt(s) that never finished"
                outcome = Outcome.failure(
                    task, attempt - 1, "too_many_attempts", message, to_dlq=True
                )
                settled.append((job, outcome))
            else:
                job.attempt = attempt
                if task.action == "generate" and task.payload.get("stream", True):
                    job.on_token = self.streams.writer(task.task_id)
                jobs.append(job)
        return jobs, settled

    def reclaim(self, ctx: TaskContext) -> int | None:
        """A retry within the same run: its attempt number, or None when it must not run."""
        verdict, attempt = self.store.claim([ctx.task], self.worker_id)[0]
        return attempt if verdict == "run" else None
