"""Every Kafka topic name and Redis key of the platform, in one place."""

from __future__ import annotations

import re
import time
import zlib
from dataclasses import dataclass

from mcp.settings import Settings
from schemas import PRIORITIES, Priority, new_task_id

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Topics:
    prefix: str = ""

    def tasks(self, model: str, priority: Priority = "normal") -> str:
        """A model's queue for one priority: `tasks.<model>`, `.high` and `.low` beside it."""
        lane = "" if priority == "normal" else f".{priority}"
        return f"{self.prefix}tasks.{_UNSAFE.sub('_', model)}{lane}"

    def lanes(self, model: str) -> list[str]:
        """Every queue topic of a model, highest priority first."""
        return [self.tasks(model, priority) for priority in PRIORITIES]

    @property
    def events(self) -> str:
        return f"{self.prefix}task-events"

    @property
    def results(self) -> str:
        return f"{self.prefix}task-results"

    @property
    def batches(self) -> str:
        """Compacted: the manifest of each JSONL batch, keyed by batch id."""
        return f"{self.prefix}batches"

    @property
    def webhook_secrets(self) -> str:
        """Compacted: the latest signing secrets of each project, keyed by project."""
        return f"{self.prefix}webhook-secrets"

    @property
    def webhooks(self) -> str:
        """Compacted: the latest state of every webhook delivery, keyed by webhook id."""
        return f"{self.prefix}webhook-deliveries"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}tasks.dlq"

    @property
    def api_keys(self) -> str:
        """Compacted: the latest record of every managed API key."""
        return f"{self.prefix}api-keys"

    def group(self, role: str) -> str:
        """Consumer group id of a role: `worker.<model>`, `projector`, `dispatcher`."""
        return f"{self.prefix}autoglm.{role}"

    def transactional_id(self, role: str, slot: str) -> str:
        return f"{self.prefix}autoglm.{role}.{slot}"

    @classmethod
    def of(cls, settings: Settings) -> Topics:
        return cls(settings.kafka.topic_prefix)


def lane_partition(project: str, partitions: int) -> int:
    """The partition of a project's tasks in a lane topic: its own, unless the hash collides,
    so one project's backlog queues behind itself rather than in front of everyone."""
    return zlib.crc32(project.encode()) % max(partitions, 1)


# librdkafka's partitioners that place a non-empty key at crc32(key) % partitions.
CRC32_PARTITIONERS = frozenset({"consistent", "consistent_random"})
# How long the new tasks of a process share one `task-events` partition (see `TaskIds`).
TASK_IDS_WINDOW_S = 0.1


class TaskIds:
    """New task ids whose `task-events` record (keyed by the id) falls in the same partition for
    every submission of a short window, the partition moving on to the next every
    `TASK_IDS_WINDOW_S`.

    A group commit holds each submission's task and its `queued` event, and Kafka's cost of a
    transaction grows with the partitions it writes (one more partition in the coordinator's
    list, in the produce request, and one more commit marker): with random ids a transaction of
    thirty submissions wrote every partition of `task-events`. An id is 124 random bits and a
    last hex digit that puts it in the window's partition. Nothing places a record by hand:
    every producer of the task's events (API, worker, replay) finds the partition by the key as
    before, and the partitions take turns evenly over time. A partition count that changed since
    the API learned it only makes the steering miss.

    Only where the producers' partitioner is librdkafka's default (`consistent_random`) or
    `consistent`, whose partition of a key is known here; otherwise the ids are plain."""

    def __init__(self, settings: Settings) -> None:
        partitioner = settings.kafka.client_config.get("partitioner", "consistent_random")
        self.steered = partitioner in CRC32_PARTITIONERS

    def new(self, partitions: int | None) -> str:
        if not self.steered or partitions is None or partitions <= 1:
            return new_task_id()
        target = int(time.monotonic() / TASK_IDS_WINDOW_S) % partitions
        while True:
            # 124 random bits, then the last hex digit that puts the id in the partition
            # (crc32 goes on from the first 31 digits' value): 16 tries per draw.
            head = new_task_id()[:-1]
            crc = zlib.crc32(head.encode())
            for digit in _HEX:
                if zlib.crc32(digit, crc) % partitions == target:
                    return head + digit.decode()


_HEX = [bytes([c]) for c in b"0123456789abcdef"]


_WEBHOOK_ID = re.compile(
    r"^msg_(.+)_(?:succeeded|failed|cancelled|expired|started|output)(?:_\d+)?$"
)


def webhook_task(webhook_id: str) -> str:
    """The task a webhook id (`mcp.webhooks.events.webhook_id`) belongs to; the id itself when it
    is not of that form."""
    found = _WEBHOOK_ID.match(webhook_id)
    return found.group(1) if found else webhook_id


@dataclass(frozen=True)
class Keys:
    """Redis keys. Keys that one script or transaction touches together share a hash tag (the
    part in braces), so they lie in one slot of a Redis Cluster:

    - a task's hash, cancel flag and timeline: `{<task id>}`;
    - a project's indexes: `{<project>}`; the worker registry: `{workers}`;
    - the webhook schedule, spread over `shards` tags `{wh<n>}`: shard n holds its due queues,
      the deliveries of the tasks that hash to n, their turns and the dispatchers' claims.
    """

    prefix: str = "autoglm:"
    shards: int = 1

    def task(self, task_id: str) -> str:
        return f"{self.prefix}task:{{{task_id}}}"

    @property
    def task_affixes(self) -> tuple[str, str]:
        """What goes before and after a task id in its hash's key."""
        return f"{self.prefix}task:{{", "}"

    @property
    def ended(self) -> str:
        """The channel the state scripts publish a task's id on when it ends (`mcp.endings`)."""
        return f"{self.prefix}ended"

    def idempotency(self, project: str, key: str) -> str:
        return f"{self.prefix}idem:{project}:{key}"

    def cancel(self, task_id: str) -> str:
        return f"{self.prefix}cancel:{{{task_id}}}"

    def stream(self, task_id: str) -> str:
        return f"{self.prefix}stream:{task_id}"

    def active(self, project: str) -> str:
        """Queued and running tasks of a project (the quota's count), scored by submit time."""
        return f"{self.prefix}active:{project}"

    def index(self, project: str, name: str) -> str:
        """A sorted set of a project's task ids (see `mcp.task_index`)."""
        return f"{self.prefix}idx:{{{project}}}:{name}"

    def index_names(self, project: str) -> str:
        """The names of a project's `model:`, `action:` and `meta:` indexes (a set), so that
        they can be trimmed without a scan of the keyspace (`mcp.task_index.IndexTrimmer`)."""
        return f"{self.prefix}idxnames:{{{project}}}"

    @property
    def index_projects(self) -> str:
        return f"{self.prefix}idx:projects"

    def timeline(self, task_id: str) -> str:
        """A task's lifecycle events: `<status>:<attempt>` -> the event."""
        return f"{self.prefix}timeline:{{{task_id}}}"

    def dead_letters(self, project: str) -> str:
        """A project's tasks in the dead-letter topic, scored by when they landed there."""
        return f"{self.prefix}dlq:{project}"

    def dead_letter(self, task_id: str) -> str:
        """Where a task's dead-letter record is (partition, offset) and why it is there."""
        return f"{self.prefix}dlq:task:{task_id}"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}worker:{worker_id}"

    def slot_owner(self, worker_id: str) -> str:
        """The instance that last took a worker slot (and so its transactional.id)."""
        return f"{self.prefix}slot:{worker_id}"

    def queue_stats(self, model: str, bucket: int) -> str:
        """A model's completions and queue waits of one 10 s bucket (see `mcp.queue_stats`)."""
        return f"{self.prefix}qstats:{model}:{bucket}"

    @property
    def workers(self) -> str:
        return f"{self.prefix}workers:{{workers}}"

    @property
    def workers_failed(self) -> str:
        """Workers whose heartbeat expired without a clean stop, scored by when it was seen."""
        return f"{self.prefix}workers:{{workers}}:failed"

    def webhook_shard(self, webhook_id: str) -> int:
        """The shard of a delivery: its task's, so a task's webhooks take turns in one slot."""
        if self.shards <= 1:
            return 0
        return zlib.crc32(webhook_task(webhook_id).encode()) % self.shards

    def _shard_tag(self, shard: int) -> str:
        return f"{{wh{shard}}}"

    def delivery(self, webhook_id: str) -> str:
        return self.delivery_prefix(self.webhook_shard(webhook_id)) + webhook_id

    def delivery_prefix(self, shard: int) -> str:
        return f"{self.prefix}webhook:{self._shard_tag(shard)}:"

    def webhook_schedule(self, shard: int = 0) -> str:
        """A shard's destinations, each scored by its earliest due delivery."""
        return f"{self.prefix}webhook:schedule:{self._shard_tag(shard)}"

    @property
    def webhook_dead(self) -> str:
        return f"{self.prefix}webhook:dead"

    def webhook_inflight(self, slot: str, shard: int = 0) -> str:
        """Deliveries of a shard that a dispatcher slot has claimed and not yet finished."""
        return f"{self.prefix}webhook:inflight:{self._shard_tag(shard)}:{slot}"

    def task_webhooks(self, task_id: str) -> str:
        """Webhook type -> webhook id of a task's latest delivery of that type."""
        return f"{self.prefix}webhook:task:{{{task_id}}}"  # a poll reads it with the task

    def webhook_target(self, task_id: str) -> str:
        """Callback URL and event filter of a running task (for started/output webhooks)."""
        return f"{self.prefix}webhook:target:{task_id}"

    def webhook_watch(self, slot: str) -> str:
        """Tasks whose output a dispatcher slot forwards as `task.output` webhooks."""
        return f"{self.prefix}webhook:watch:{slot}"

    def batch(self, batch_id: str) -> str:
        """A JSONL batch's manifest (projected from the `batches` topic)."""
        return f"{self.prefix}batch:{batch_id}"

    def webhook_secret(self, project: str) -> str:
        """The generated signing secrets of a project that has none configured (a hash: the
        latest `ProjectSecrets` and its version; projected from the `webhook-secrets` topic)."""
        return f"{self.prefix}webhook:secrets:{project}"

    def webhook_turn(self, shard: int, task_id: str = "") -> str:
        """The webhook of a task being attempted now; the task's others wait for their turn."""
        return f"{self.prefix}webhook:turn:{self._shard_tag(shard)}:{task_id}"

    def webhook_held(self, shard: int, task_id: str = "") -> str:
        """A task's webhooks held back while an earlier one is attempted, with their places."""
        return f"{self.prefix}webhook:held:{self._shard_tag(shard)}:{task_id}"

    @property
    def webhook_applied(self) -> str:
        """Partition -> next offset of `webhook-deliveries` that Redis holds the state up to.
        Gone means Redis lost the webhook state and it is rebuilt from the beginning; it names
        the number of shards, so changing that rebuilds the state too."""
        return f"{self.prefix}webhook:applied:{self.shards}"

    def webhook_due(self, destination: str, shard: int = 0) -> str:
        """A shard's deliveries to one destination (`host:port`), scored by when each is due."""
        return f"{self.prefix}webhook:due:{self._shard_tag(shard)}:{destination}"

    @classmethod
    def of(cls, settings: Settings) -> Keys:
        return cls(settings.redis.key_prefix, settings.redis.shards)
