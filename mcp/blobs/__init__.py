"""Blob storage for inputs and results too large for Kafka (the claim check)."""

from mcp.blobs.backends import filesystem_store, open_blob_store, s3_store
from mcp.blobs.store import BlobInfo, BlobStore

__all__ = ["BlobInfo", "BlobStore", "filesystem_store", "open_blob_store", "s3_store"]
