"""`autoglm keys create|list|revoke`: manage API keys through the API of a running platform.

The admin credential comes from `--token`, else `AUTOGLM_API_TOKEN`, else the configured
`auth.bootstrap_admin_key`; the API from `--url`, else `AUTOGLM_API_URL`, else the configured
host and port.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import httpx
import orjson

from mcp.settings import get_settings


def _client(args: argparse.Namespace) -> httpx.Client:
    settings = get_settings()
    url = args.url or os.environ.get("AUTOGLM_API_URL")
    if not url:
        url = f"{settings.server.protocol}://{settings.server.host}:{settings.server.port}"
    token = args.token or os.environ.get("AUTOGLM_API_TOKEN") or settings.auth.bootstrap_admin_key
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=30)


def _show(response: httpx.Response, ok: int) -> int:
    body: Any = response.json() if response.content else {}
    sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0 if response.status_code == ok else 1


def run(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.keys_command == "create":
            body: dict[str, Any] = {"project": args.project, "role": args.role, "name": args.name}
            if args.expires_in is not None:
                body["expires_in_s"] = args.expires_in
            code = _show(client.post("/v1/keys", json=body), 201)
            if code == 0:
                sys.stderr.write("The key is shown once: store it now.\n")
            return code
        if args.keys_command == "list":
            params = {"project": args.project} if args.project else {}
            return _show(client.get("/v1/keys", params=params), 200)
        return _show(client.delete(f"/v1/keys/{args.key_id}"), 200)
