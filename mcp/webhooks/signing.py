"""Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets as random_secrets
import time
from collections.abc import Sequence

from mcp.errors import InvalidWebhookSecret

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh `whsec_` secret holding 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(random_secrets.token_bytes(32)).decode("ascii")


@functools.lru_cache(maxsize=1024)
def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (decoded once per secret, not per attempt)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidWebhookSecret("a webhook secret must be 'whsec_' + base64") from exc
    if len(key) < 16:
        raise InvalidWebhookSecret("a webhook secret must hold at least 16 random bytes")
    return key


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.digest(secret_key(secret), signed, hashlib.sha256)
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: one signature per active secret, space separated."""
    if not secrets:
        raise InvalidWebhookSecret("no webhook secret to sign with")
    return " ".join(signature(secret, msg_id, timestamp, body) for secret in secrets)


def webhook_headers(
    secrets: Sequence[str], msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt (the timestamp is the attempt's)."""
    at = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(at),
        "webhook-signature": sign(secrets, msg_id, at, body),
        "content-type": "application/json",
    }
