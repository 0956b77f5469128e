"""Which secrets sign a project's webhooks, and their rotation.

Configured secrets (`webhooks.secrets[project]`, several during a rotation) always win. A project
without any gets a secret generated on its first need (its first webhook, or a read of
`GET /v1/webhooks/secret`); `POST /v1/webhooks/secret/rotate` adds a new one while the old one
keeps signing until `expires_at` (every active secret signs: the header then holds one signature
per secret).

The secrets are a fact in Kafka first: each change is a `ProjectSecrets` record (keyed by the
project) in the compacted `webhook-secrets` topic, acknowledged by every in-sync replica before
Redis holds it. Redis keeps the latest version per project (a projection; `replay_secrets`
rebuilds it). Readers cache what they read for `CACHE_S`, so a rotation reaches every
dispatcher within that time.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

import redis
import redis.asyncio as aioredis
from confluent_kafka import KafkaError, Producer
from pydantic import Field

from mcp.errors import BrokerUnavailable, SecretsConfigured, StoreError
from mcp.kafka import ensure_topics, latest_values
from mcp.names import Keys, Topics
from mcp.redis_client import async_script
from mcp.redis_client import script as sync_script
from mcp.settings import Settings
from mcp.webhooks.signing import new_secret, secret_key
from schemas import dumps, loads
from schemas.task import Frozen, utcnow

CACHE_S = 2.0

# Keep a newer version only: a replayed or late record never undoes a rotation.
_APPLY = """
local current = redis.call('HGET', KEYS[1], 'version')
if current and tonumber(current) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'fact', ARGV[2])
return 1
"""


class SigningSecret(Frozen):
    secret: str
    created_at: datetime
    expires_at: datetime | None = None


class ProjectSecrets(Frozen):
    """The signing secrets of one project; the value of a record in `webhook-secrets`."""

    project: str
    version: int = Field(default_factory=lambda: time.time_ns() // 1000)
    secrets: tuple[SigningSecret, ...]

    def active(self, now: datetime | None = None) -> list[SigningSecret]:
        """Newest first, the expired left out."""
        now = now or utcnow()
        alive = [s for s in self.secrets if s.expires_at is None or s.expires_at > now]
        return sorted(alive, key=lambda s: s.created_at, reverse=True)

    def rotated(self, overlap_s: float) -> ProjectSecrets:
        """A new current secret; the active ones keep signing for `overlap_s` more at most."""
        now = utcnow()
        until = now + timedelta(seconds=overlap_s)
        kept = [
            s.model_copy(update={"expires_at": min(s.expires_at or until, until)})
            for s in self.active(now)
            if overlap_s > 0
        ]
        fresh = SigningSecret(secret=new_secret(), created_at=now)
        return ProjectSecrets(project=self.project, secrets=(fresh, *kept))


def validate_configured(settings: Settings) -> None:
    """Raise `InvalidWebhookSecret` when a configured secret is not `whsec_<base64>`."""
    for secrets in settings.webhooks.secrets.values():
        for secret in secrets:
            secret_key(secret)


class WebhookSecrets:
    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys.of(settings)
        self.topic = Topics.of(settings).webhook_secrets
        self._cache: dict[str, tuple[float, ProjectSecrets]] = {}
        self._producer: Producer | None = None
        self._apply = async_script(redis, _APPLY)
        self._lock = asyncio.Lock()

    def configured(self, project: str) -> list[str]:
        return list(self.settings.webhooks.secrets.get(project) or [])

    async def get(self, project: str) -> list[str]:
        """The secrets that sign `project`'s webhooks now, newest first."""
        configured = self.configured(project)
        if configured:
            return configured
        return [s.secret for s in (await self.current(project)).active()]

    async def current(self, project: str) -> ProjectSecrets:
        """The generated secrets of `project`, made on the first call."""
        cached = self._cache.get(project)
        if cached is not None and time.monotonic() - cached[0] < CACHE_S:
            return cached[1]
        fact = await self._read(project)
        if fact is None or not fact.active():
            async with self._lock:
                fact = await self._read(project)
                if fact is None or not fact.active():
                    now = utcnow()
                    fresh = ProjectSecrets(
                        project=project,
                        secrets=(SigningSecret(secret=new_secret(), created_at=now),),
                    )
                    fact = await self._record(fresh)
        self._cache[project] = (time.monotonic(), fact)
        return fact

    async def rotate(self, project: str, overlap_s: float) -> ProjectSecrets:
        if self.configured(project):
            raise SecretsConfigured(
                f"the webhook secrets of project {project!r} are configured; rotate them in "
                "the configuration (webhooks.secrets)",
                {"project": project},
            )
        async with self._lock:
            current = await self._read(project) or ProjectSecrets(project=project, secrets=())
            return await self._record(current.rotated(overlap_s))

    async def _read(self, project: str) -> ProjectSecrets | None:
        raw = await self.redis.hget(self.keys.webhook_secret(project), "fact")
        return None if raw is None else loads(ProjectSecrets, raw)

    async def _record(self, fact: ProjectSecrets) -> ProjectSecrets:
        """Kafka first (acknowledged by all in-sync replicas), then Redis; the newest wins."""
        await asyncio.to_thread(self._publish, fact)
        await self._apply(
            keys=[self.keys.webhook_secret(fact.project)], args=[fact.version, dumps(fact)]
        )
        stored = await self._read(fact.project)
        if stored is None:
            raise StoreError(f"the webhook secrets of project {fact.project!r} vanished")
        self._cache[fact.project] = (time.monotonic(), stored)
        return stored

    def _publish(self, fact: ProjectSecrets) -> None:
        if self._producer is None:
            # A dispatcher may be the first to need the topic.
            try:
                ensure_topics(self.settings, [], self.settings.kafka.request_timeout_s)
            except Exception as exc:
                raise BrokerUnavailable(f"Kafka is not reachable: {exc}") from exc
            self._producer = Producer(
                self.settings.kafka_client_config(
                    **{"acks": "all", "enable.idempotence": True, "linger.ms": 0}
                )
            )
        failed: list[KafkaError] = []
        self._producer.produce(
            self.topic,
            dumps(fact),
            fact.project.encode(),
            on_delivery=lambda err, _msg: failed.append(err) if err else None,
        )
        left = self._producer.flush(self.settings.kafka.request_timeout_s)
        if left or failed:
            raise BrokerUnavailable(f"Kafka did not take the webhook secrets: {failed or left}")


def replay_secrets(settings: Settings, client: redis.Redis) -> int:
    """Re-apply the latest record of each project in `webhook-secrets` to Redis (for
    `autoglm replay`); returns how many projects were applied."""
    keys = Keys.of(settings)
    script = sync_script(client, _APPLY)
    facts = [
        loads(ProjectSecrets, raw)
        for raw in latest_values(settings, Topics.of(settings).webhook_secrets)
    ]
    for fact in facts:
        script(keys=[keys.webhook_secret(fact.project)], args=[fact.version, dumps(fact)])
    return len(facts)
