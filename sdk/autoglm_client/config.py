"""Where the API is and how patient the client is: explicit arguments over the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class ClientConfig:
    """`AUTOGLM_URL` and `AUTOGLM_API_KEY` fill what the caller leaves out."""

    base_url: str
    api_key: str | None
    timeout: httpx.Timeout

    @classmethod
    def resolve(
        cls,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
    ) -> ClientConfig:
        url = base_url or os.environ.get("AUTOGLM_URL") or DEFAULT_URL
        key = api_key if api_key is not None else os.environ.get("AUTOGLM_API_KEY") or None
        if timeout is None:
            timeout = float(os.environ.get("AUTOGLM_TIMEOUT", "30"))
        if not isinstance(timeout, httpx.Timeout):
            timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        return cls(base_url=url.rstrip("/"), api_key=key, timeout=timeout)

    def headers(self) -> dict[str, str]:
        from autoglm_client import __version__

        headers = {"user-agent": f"autoglm-client/{__version__}", "accept": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return headers
