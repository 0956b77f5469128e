"""A webhook receiver built with the SDK's helper, served by uvicorn, fed by the platform."""

import json
import sys
import threading
import time

import httpx
import uvicorn
from autoglm_client import Client, WebhookEvent, WebhookReceiver

secret, port = sys.argv[1], int(sys.argv[2])
events: list[WebhookEvent] = []
receiver = WebhookReceiver(secret, events.append)
server = uvicorn.Server(uvicorn.Config(receiver, port=port, log_level="warning"))
threading.Thread(target=server.run, daemon=True).start()
while not server.started:
    time.sleep(0.02)


def until(check, what):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


with Client() as client:
    hook = f"http://127.0.0.1:{port}/hook"
    task = client.submit("echo", payload={"hello": "webhook"}, callback_url=hook)
    until(lambda: receiver.handled == 1, "the webhook")
    until(lambda: client.get(task.task_id).webhook.status == "delivered", "delivered")
    client.redeliver_webhook(task.task_id)
    until(lambda: receiver.duplicates == 1, "the redelivered webhook")
    forged = httpx.post(
        hook,
        content=b'{"type": "task.succeeded"}',
        headers={
            "webhook-id": "x",
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "v1,Zm9yZ2Vk",
        },
    )
server.should_exit = True
print(
    json.dumps(
        {
            "handled": receiver.handled,
            "duplicates": receiver.duplicates,
            "rejected": receiver.rejected,
            "forged_status": forged.status_code,
            "events": [[e.id, e.type, e.data.task_id, e.data.result] for e in events],
            "task_id": task.task_id,
        }
    )
)
