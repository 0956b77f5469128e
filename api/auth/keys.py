"""Managed API keys: created, listed and revoked through `/v1/keys`, durable in Kafka.

A key is `agk_<key_id>_<secret>`. Only the SHA-256 of the whole key is kept (the secret has 256
random bits, so a slow hash would add nothing) together with a visible prefix to recognise it.
Every fact about a key (created, revoked) is its full record, written to the compacted topic
`api-keys` under the key id: the topic keeps the latest record of every key for ever. Each API
process reads the topic from the start into a `KeyRing` in memory and keeps following it, so a
revocation reaches every process within a poll interval, and a lookup costs no round trip.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from datetime import datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from pydantic import BaseModel, ConfigDict

from mcp.kafka import consumer_config
from mcp.names import Topics
from mcp.settings import Role, Settings
from schemas import utcnow

log = logging.getLogger(__name__)

TOKEN_PREFIX = "agk_"
POLL_S = 0.1


class KeyRecord(BaseModel):
    """What the platform keeps of a managed key (never the secret)."""

    model_config = ConfigDict(frozen=True)

    version: int = 1
    key_id: str
    name: str = ""
    project: str
    role: Role
    prefix: str
    secret_sha256: str
    created_at: datetime
    created_by: str = ""
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def public(self) -> dict[str, object]:
        """The record as `/v1/keys` shows it."""
        body = self.model_dump(mode="json", exclude={"secret_sha256", "version"})
        body["status"] = (
            "revoked"
            if self.revoked_at
            else "expired"
            if self.expires_at and self.expires_at <= utcnow()
            else "active"
        )
        return body


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_key(
    project: str, role: Role, name: str, expires_at: datetime | None, created_by: str
) -> tuple[KeyRecord, str]:
    """A fresh key record and its secret token (shown once, never stored)."""
    key_id = secrets.token_hex(8)
    token = f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    record = KeyRecord(
        key_id=key_id,
        name=name,
        project=project,
        role=role,
        prefix=token[: len(TOKEN_PREFIX) + 12],
        secret_sha256=digest(token),
        created_at=utcnow(),
        created_by=created_by,
        expires_at=expires_at,
    )
    return record, token


def key_id_of(token: str) -> str | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    key_id, sep, _ = token[len(TOKEN_PREFIX) :].partition("_")
    return key_id if sep and key_id else None


class KeyRing:
    """The managed keys this process knows, by id; records replace older ones."""

    def __init__(self) -> None:
        self._records: dict[str, KeyRecord] = {}

    def apply(self, record: KeyRecord) -> None:
        current = self._records.get(record.key_id)
        if current is not None and current.revoked_at and not record.revoked_at:
            return  # revocation is final, whatever order the facts arrive in
        self._records[record.key_id] = record

    def get(self, key_id: str) -> KeyRecord | None:
        return self._records.get(key_id)

    def match(self, token: str) -> KeyRecord | None:
        """The record of this exact token, active or not; None when it is not a known key."""
        key_id = key_id_of(token)
        record = self._records.get(key_id) if key_id else None
        if record is None or not hmac.compare_digest(record.secret_sha256, digest(token)):
            return None
        return record

    def all(self) -> list[KeyRecord]:
        return sorted(self._records.values(), key=lambda r: r.created_at)


class KeyFeed:
    """Follows the `api-keys` topic into a ring, from the beginning, in a thread of its own."""

    def __init__(self, settings: Settings, ring: KeyRing) -> None:
        self.settings = settings
        self.ring = ring
        self.topic = Topics.of(settings).api_keys
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="key-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        consumer = Consumer(
            consumer_config(
                self.settings,
                f"unused.{self.topic}",
                **{"enable.partition.eof": True, "fetch.wait.max.ms": int(POLL_S * 1000)},
            )
        )
        try:
            partitions = self._partitions(consumer)
            if partitions is None:
                return
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
            at_end: set[int] = set()
            while not self._stop.is_set():
                msg = consumer.poll(POLL_S)
                if msg is None:
                    continue
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition() or 0)
                        if at_end >= set(partitions):
                            self.caught_up.set()
                    continue
                try:
                    self.ring.apply(KeyRecord.model_validate_json(msg.value() or b""))
                except ValueError as exc:
                    log.warning("skipping an unreadable key record: %s", exc)
        finally:
            consumer.close()

    def _partitions(self, consumer: Consumer) -> list[int] | None:
        while not self._stop.is_set():
            try:
                topic = consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
                if topic is not None and topic.error is None and topic.partitions:
                    return list(topic.partitions)
            except Exception as exc:
                log.warning("key topic not readable yet: %s", exc)
            self._stop.wait(1.0)
        return None
