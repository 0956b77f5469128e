"""The dashboard in a real browser: sign in, watch a task arrive in the list, read its detail,
see a glm-tiny task's tokens stream in, and redeliver a dead webhook."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from tests.harness import Platform, submit, wait_for, wait_statuses
from tests.mcp.webhooks.conftest import Receiver, Reply
from tests.ui.conftest import KEYS

pytestmark = pytest.mark.integration

ALPHA, BETA = list(KEYS)
SLOW_MS = 120_000


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
    expect(page.locator("#who")).to_have_text(f"project {KEYS[key]['project']}")


def shot(page: Page, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


def open_task(page: Page, task_id: str) -> None:
    page.fill("#search-id", task_id)
    page.press("#search-id", "Enter")
    expect(page.locator("#task-id")).to_have_text(task_id)


def screenshot_png() -> str:
    image = Image.new("RGB", (90, 160), (37, 99, 235))
    image.paste((250, 250, 250), (10, 10, 80, 40))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def test_sign_in_keeps_the_key_in_an_http_only_cookie(
    platform: Platform, browser: Browser, artifacts: Path
) -> None:
    platform.api()
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, platform, ALPHA)
    [cookie] = context.cookies()
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    # Scripts cannot read it, and the page's own requests carry it.
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("fetch('/ui/session').then(r => r.status)") == 200
    # A write with the cookie alone, as a cross-site form would send it, is refused.
    refused = page.evaluate("fetch('/v1/tasks/x/cancel', {method: 'POST'}).then(r => r.status)")
    assert refused == 403
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    assert context.cookies() == []
    context.close()


def test_dashboard_follows_a_task_from_submit_to_redelivered_webhook(
    platform: Platform, browser: Browser, artifacts: Path
) -> None:
    receiver = Receiver(Reply(status=500))
    platform.api()
    platform.worker("echo", "0")
    platform.dispatcher()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_in(page, platform, ALPHA)
        with client_of(platform, ALPHA) as alpha, client_of(platform, BETA) as beta:
            run_flow(page, platform, alpha, beta, receiver, artifacts)
    finally:
        context.close()
        receiver.close()
    assert errors == []  # no script error on any page


def run_flow(
    page: Page,
    platform: Platform,
    alpha: httpx.Client,
    beta: httpx.Client,
    receiver: Receiver,
    artifacts: Path,
) -> None:
    # 1. The list is open (live refresh) when the task is submitted over HTTP.
    page.click("#nav a[data-page=tasks]")
    expect(page.locator("#task-filters")).to_be_visible()
    body = {
        "model": "echo",
        "action": "generate",
        "payload": {"prompt": "tap the blue button", "screenshot": screenshot_png()},
        "callback_url": receiver.url("/hook"),
        "metadata": {"ticket": "T-1"},
    }
    task_id = submit(alpha, body).json()["task_id"]
    row = page.locator(f"#tasks-table a.task-link:text-is('{task_id}')")
    expect(row).to_be_visible(timeout=SLOW_MS)
    wait_statuses(alpha, [task_id], {"succeeded"})
    expect(page.locator("#tasks-table tbody tr").first).to_contain_text("succeeded")
    shot(page, artifacts, "01-tasks")

    # 2. Its detail: the input with the screenshot as an image, the result, the timeline.
    row.click()
    expect(page.locator("#task-id")).to_have_text(task_id)
    expect(page.locator("#result")).to_contain_text('"prompt": "tap the blue button"')
    expect(page.locator("#payload img.screenshot")).to_be_visible()
    assert page.eval_on_selector("#payload img.screenshot", "img => img.naturalWidth") == 90
    expect(page.locator("#timeline-table")).to_contain_text("succeeded")
    expect(page.locator("#webhook-table")).to_contain_text("500", timeout=SLOW_MS)
    shot(page, artifacts, "02-task-detail")

    # 3. A glm-tiny task queued before any worker for it runs: the page is open when its tokens
    # are produced, so they can only have arrived through the live stream.
    tiny: dict[str, Any] = {
        "model": "glm-tiny",
        "action": "generate",
        "payload": {"prompt": "Hello", "max_tokens": 24, "temperature": 0},
    }
    tiny_id = submit(alpha, tiny).json()["task_id"]
    open_task(page, tiny_id)
    expect(page.locator("main .badge").first).to_have_text("queued")
    assert page.inner_text("#token-stream") == ""
    platform.worker("glm-tiny", "0")
    expect(page.locator("main .badge").first).to_have_text("succeeded", timeout=SLOW_MS)
    [view] = wait_statuses(alpha, [tiny_id], {"succeeded"}).values()
    streamed = page.inner_text("#token-stream")
    assert streamed and streamed.strip() == view["result"]["text"].strip()
    shot(page, artifacts, "03-task-glm-tiny-streamed")

    # 4. The webhook ran out of retries; the receiver recovers; redeliver it from the UI.
    page.click("#nav a[data-page=webhooks]")
    expect(page.locator("#dead-webhooks")).to_contain_text(task_id, timeout=SLOW_MS)
    shot(page, artifacts, "04-dead-webhooks")
    receiver.default = Reply(status=200)
    before = len(receiver.on("/hook"))
    page.click("#redeliver-all")
    expect(page.locator("main .ok")).to_contain_text("Queued again: 1")
    wait_for(lambda: len(receiver.on("/hook")) > before, 30, "the redelivered webhook")
    assert len({r.webhook_id for r in receiver.on("/hook")}) == 1  # the same event, same id
    expect(page.locator("main")).to_contain_text("No dead webhook.")
    wait_for(
        lambda: alpha.get(f"/v1/tasks/{task_id}").json()["webhook"]["status"] == "delivered",
        30,
        "delivered",
    )

    # 5. A task that failed every attempt is requeued from the dead-letter page.
    dead_id = submit(alpha, {**tiny, "model": "echo", "payload": {"fail_times": 9}}).json()[
        "task_id"
    ]
    page.click("#nav a[data-page=dlq]")
    expect(page.locator(f"button.requeue[data-task='{dead_id}']")).to_be_visible(timeout=SLOW_MS)
    page.click(f"button.requeue[data-task='{dead_id}']")
    expect(page.locator("#requeued-task")).to_be_visible()
    new_id = page.inner_text("#requeued-task")
    assert new_id != dead_id
    expect(page.locator("#dead-letters")).to_contain_text(new_id)
    shot(page, artifacts, "05-dead-letters")

    # 6. The overview charts what happened: rates, workers, backlog and oldest task of the
    # project; every project's consumer lag and queue waits (the echo tasks just finished).
    page.click("#nav a[data-page=overview]")
    expect(page.locator("figure.chart")).to_have_count(6, timeout=SLOW_MS)
    expect(page.locator("#queues")).to_contain_text("glm-tiny")
    for title in ("Consumer lag", "Queue wait p95"):
        expect(page.locator(f"figure.chart[data-chart='{title}']")).to_contain_text("echo")
    echo = page.locator("#queues tbody tr").filter(
        has=page.locator("td:first-child", has_text=re.compile(r"^echo$"))
    )
    expect(echo.locator("td:nth-child(5)")).to_have_text(re.compile(r"^\d+$"), timeout=30_000)
    expect(echo.locator("td:nth-child(6)")).to_have_text(
        re.compile(r"^\d+\.\d{3} s / \d+\.\d{3} s$"), timeout=30_000
    )
    expect(echo.locator("td:nth-child(7)")).to_have_text(re.compile(r"^[1-9]\d*$"), timeout=30_000)
    page.wait_for_timeout(3000)
    shot(page, artifacts, "06-overview")

    # 7. A developer of another project: only the pages of its role, none of alpha's tasks.
    page.click("#logout")
    # Logging out reloads the page; signing in again must not race that reload.
    expect(page.locator("#login")).to_be_visible()
    sign_in(page, platform, BETA)
    expect(page.locator("#nav a")).to_have_text(["Tasks"])
    expect(page.locator("main h1")).to_have_text("Tasks")
    mine = submit(beta, {"model": "echo", "action": "generate", "payload": {}}).json()["task_id"]
    expect(page.locator("#tasks-table a.task-link")).to_have_text([mine], timeout=SLOW_MS)
    open_task(page, task_id)
    expect(page.locator("main .error")).to_contain_text("no task")
