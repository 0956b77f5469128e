"""Fixtures shared by the tests of `mcp`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mcp.settings import Settings
from mcp.store import SyncTaskStore


@pytest.fixture
def store(settings: Settings) -> Iterator[SyncTaskStore]:
    """The blocking task store of the test's namespace (a module may define its own `store`)."""
    sync = SyncTaskStore(settings)
    yield sync
    sync.close()
