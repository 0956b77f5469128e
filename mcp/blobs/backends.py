"""Builds the configured blob store: a directory (default) or an S3-compatible bucket."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from obstore.store import LocalStore, S3Store

from mcp.blobs.store import BlobStore
from mcp.settings import BlobSettings, Settings

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config


def open_blob_store(settings: Settings) -> BlobStore:
    blobs = settings.blobs
    if blobs.backend == "s3":
        return s3_store(blobs)
    root = Path(blobs.path or Path(settings.cache_dir) / "blobs")
    return filesystem_store(root / blobs.key_prefix if blobs.key_prefix else root)


def filesystem_store(root: Path) -> BlobStore:
    root.mkdir(parents=True, exist_ok=True)
    return BlobStore(LocalStore(root.resolve(), mkdir=True), f"file://{root.resolve()}")


def s3_store(blobs: BlobSettings) -> BlobStore:
    s3 = blobs.s3
    client: ClientConfig = {
        "connect_timeout": timedelta(seconds=blobs.connect_timeout_s),
        "timeout": timedelta(seconds=blobs.timeout_s),
        "allow_http": bool(s3.endpoint and s3.endpoint.startswith("http://")),
    }
    retry: RetryConfig = {
        "max_retries": blobs.max_retries,
        "retry_timeout": timedelta(seconds=blobs.timeout_s),
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=2),
            "base": 2,
        },
    }
    config: S3Config = {
        "region": s3.region,
        "virtual_hosted_style_request": s3.virtual_hosted_style,
    }
    if s3.endpoint:
        config["endpoint"] = s3.endpoint
    if s3.access_key_id and s3.secret_access_key:
        config["access_key_id"] = s3.access_key_id
        config["secret_access_key"] = s3.secret_access_key
    store = S3Store(
        s3.bucket,
        prefix=blobs.key_prefix or None,
        config=config,
        client_options=client,
        retry_config=retry,
    )
    where = s3.endpoint or "aws"
    return BlobStore(store, f"s3://{s3.bucket}/{blobs.key_prefix} at {where}")
