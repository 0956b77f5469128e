"""Test-data hooks for the schemathesis run (loaded through SCHEMATHESIS_HOOKS).

Two rules of the API depend on the world rather than on the request's shape, so requests are
adjusted for them just before they are sent (schemathesis then re-checks them against the
schema, so a case stays correctly labelled valid or invalid):
- a callback URL must resolve to an address the platform may call: a fuzzed host never does, so
  an `http(s)://` URL becomes one on loopback (allowed in dev mode);
- `POST /v1/infer` waits up to `Prefer: wait=N` (30 s by default) for tasks that no worker of
  this test runs: one second is enough to check the answer (`GET /v1/tasks/{id}?wait=N` gets
  one second through `schemathesis.toml`).
And the JSONL batch upload (`application/jsonl`) is sent as text.
"""

from __future__ import annotations

import re
from typing import Any

import schemathesis
from schemathesis.transport.prepare import get_exclude_headers

LOOPBACK = "http://127.0.0.1:9/hook"
# A JSONL upload is text on the wire.
schemathesis.serializer.alias("application/jsonl", "text/plain")
HTTP_URL = re.compile(r"^[Hh][Tt][Tt][Pp][Ss]?://")


def _callback_on_loopback(holder: Any) -> None:
    if isinstance(holder, dict):
        url = holder.get("callback_url")
        if isinstance(url, str) and HTTP_URL.match(url) and len(url) <= 2083:
            holder["callback_url"] = LOOPBACK


@schemathesis.hook
def before_call(ctx: Any, case: Any, kwargs: dict[str, Any]) -> None:
    # A case that leaves a header out stays as drawn: an edit makes schemathesis re-label it
    # and send the header after all. Invalid bodies are refused before a callback matters.
    if get_exclude_headers(case):
        return
    if case.meta is None or not case.meta.generation.mode.is_negative:
        _callback_on_loopback(case.body)
        if isinstance(case.body, dict):
            _callback_on_loopback(case.body.get("payload"))
    if case.operation.path == "/v1/infer":
        if case.headers is None:
            case.headers = {}
        case.headers["prefer"] = "wait=1"
