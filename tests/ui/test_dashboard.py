"""The dashboard in a real browser: sign in, find a task, watch its tokens arrive, act on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.harness import Platform, submit, wait_statuses
from tests.ui.conftest import KEYS

pytestmark = pytest.mark.integration

ALPHA, BETA = list(KEYS)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def client_of(platform: Platform, key: str) -> httpx.Client:
    return httpx.Client(base_url=platform.url, timeout=30, headers=bearer(key))


def sign_in(page: Page, platform: Platform, key: str) -> None:
    page.goto(f"{platform.url}/ui")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#api-key", "not-a-key")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("invalid API key")
    page.fill("#api-key", key)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("#who")).to_have_text(f"project {KEYS[key]}")


def shot(page: Page, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


def open_task(page: Page, task_id: str) -> None:
    page.fill("#search-id", task_id)
    page.press("#search-id", "Enter")
    expect(page.locator("#task-id")).to_have_text(task_id)


def test_sign_in_keeps_the_key_in_an_http_only_cookie(
    platform: Platform, browser: Browser, artifacts: Path
) -> None:
    platform.api()
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, platform, ALPHA)
    shot(page, artifacts, "01-overview")
    [cookie] = context.cookies()
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    # Scripts cannot read it, and the page's own requests carry it.
    assert page.evaluate("document.cookie") == ""
    status = page.evaluate("fetch('/ui/session').then(r => r.status)")
    assert status == 200
    # A write with the cookie alone, as a cross-site form would send it, is refused.
    refused = page.evaluate("fetch('/v1/tasks/x/cancel', {method: 'POST'}).then(r => r.status)")
    assert refused == 403
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    assert context.cookies() == []
    context.close()


def test_task_detail_streams_tokens_live_and_hides_other_projects(
    platform: Platform, browser: Browser, artifacts: Path
) -> None:
    platform.api()
    platform.worker("echo", "0")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, platform, ALPHA)
    with client_of(platform, ALPHA) as alpha, client_of(platform, BETA) as beta:
        echo = submit(alpha, {"model": "echo", "action": "generate", "payload": {"prompt": "hi"}})
        echo_id = echo.json()["task_id"]
        wait_statuses(alpha, [echo_id], {"succeeded"})
        open_task(page, echo_id)
        expect(page.locator("#result")).to_contain_text('"prompt": "hi"')
        shot(page, artifacts, "02-task-echo")

        # The glm-tiny task is queued before any worker for it runs: the page is already open
        # when its tokens are produced, so they can only have arrived through the live stream.
        body: dict[str, Any] = {
            "model": "glm-tiny",
            "action": "generate",
            "payload": {"prompt": "Hello", "max_tokens": 24, "temperature": 0},
        }
        tiny_id = submit(alpha, body).json()["task_id"]
        open_task(page, tiny_id)
        expect(page.locator(".badge")).to_have_text("queued")
        assert page.inner_text("#token-stream") == ""
        platform.worker("glm-tiny", "0")
        expect(page.locator(".badge")).to_have_text("succeeded", timeout=120_000)
        [view] = wait_statuses(alpha, [tiny_id], {"succeeded"}).values()
        streamed = page.inner_text("#token-stream")
        assert streamed and streamed.strip() == view["result"]["text"].strip()
        shot(page, artifacts, "03-task-glm-tiny-streamed")

        foreign = submit(beta, {"model": "echo", "action": "generate", "payload": {}})
        open_task(page, foreign.json()["task_id"])
        expect(page.locator("main .error")).to_contain_text("no task")
    context.close()
