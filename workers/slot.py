"""Who holds a worker slot. Starting with a slot's transactional.id fences whoever held it
before; the newcomer also records itself here, so that the fenced one can tell a takeover
(exit, `FENCED_EXIT`) from Kafka fencing a transaction that merely timed out (take over again)."""

from __future__ import annotations

import time
import uuid

import redis
from redis.exceptions import RedisError

from mcp.names import Keys
from mcp.transaction import ConsumerTransaction, InstanceFenced

FENCED_EXIT = 3
"""Exit status of a worker whose slot a newer instance took."""

OWNER_TTL_S = 30 * 86_400
CHECK_EVERY_S = 2.0


class SlotOwner:
    def __init__(self, client: redis.Redis, keys: Keys, worker_id: str) -> None:
        self.redis = client
        self.key = keys.slot_owner(worker_id)
        self.token = uuid.uuid4().hex
        self._checked_at = time.monotonic()

    def claim(self) -> None:
        try:
            self.redis.set(self.key, self.token, ex=OWNER_TTL_S)
        except RedisError:
            pass  # without Redis a takeover is not told apart: fencing makes this one retry

    def check(self, txn: ConsumerTransaction) -> None:
        """Every `CHECK_EVERY_S`: raise InstanceFenced once a newer instance holds the slot, so an
        idle worker leaves its group too instead of holding partitions it cannot commit."""
        now = time.monotonic()
        if now - self._checked_at < CHECK_EVERY_S:
            return
        self._checked_at = now
        if self.superseded():
            txn.fenced = True
            raise InstanceFenced(f"{txn.transactional_id} was taken over by a newer instance")

    def superseded(self) -> bool:
        try:
            owner = self.redis.get(self.key)
        except RedisError:
            return False
        if owner is None:
            return False
        return (owner.decode() if isinstance(owner, bytes) else str(owner)) != self.token
