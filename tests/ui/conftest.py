"""A real browser for the dashboard's tests: Debian's Chromium driven by Playwright.

Playwright never downloads a browser here; `.ci/run` installs Debian's `chromium`. Screenshots go
to `test-artifacts/ui/` (git-ignored), one per step, so a failed run shows what the browser saw.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from mcp.settings import Settings
from tests.conftest import make_settings
from tests.harness import ROOT
from tests.mcp.webhooks.conftest import SECRET

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "ui"
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# An admin of project alpha (every page) and a developer of project beta.
KEYS = {
    "ui-key-alpha": {"project": "alpha", "role": "admin"},
    "ui-key-beta": {"project": "beta", "role": "developer"},
}


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    """Package-scoped: the sync driver runs an event loop on this thread until it exits, and the
    test packages after this one call asyncio.run."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str, namespace: str) -> Settings:
    """The platform with authentication on: two projects, one API key each."""
    return make_settings(
        kafka_bootstrap,
        redis_url,
        namespace,
        auth={"enabled": True, "api_keys": KEYS},
        webhooks={
            "allow_networks": ["127.0.0.0/8"],
            "secrets": {"alpha": [SECRET]},
            "schedule_s": [0.0, 0.1],
            "jitter": 0,
        },
    )
