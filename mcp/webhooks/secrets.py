"""Which secrets sign a project's webhooks.

Configured secrets (`webhooks.secrets[project]`, several during a rotation) always win. A project
without any gets a secret generated on its first webhook and kept in Redis, so signatures work
from the first delivery; the operator reads it with `WebhookSecrets.get` (or configures one).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from mcp.errors import StoreError
from mcp.names import Keys
from mcp.settings import Settings
from mcp.webhooks.signing import new_secret, secret_key


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
        self._generated: dict[str, str] = {}

    async def get(self, project: str) -> list[str]:
        """The active secrets of `project`, newest configuration first."""
        configured = self.settings.webhooks.secrets.get(project)
        if configured:
            return list(configured)
        if project not in self._generated:
            key = self.keys.webhook_secret(project)
            await self.redis.set(key, new_secret(), nx=True)
            stored = await self.redis.get(key)
            if stored is None:
                raise StoreError(f"the webhook secret of project {project!r} vanished from Redis")
            self._generated[project] = stored.decode() if isinstance(stored, bytes) else str(stored)
        return [self._generated[project]]
