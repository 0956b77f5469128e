"""The dashboard's session over plain HTTP: the cookie carries exactly the API key's rights."""

from __future__ import annotations

import httpx
import pytest

from tests.harness import Platform, submit
from tests.ui.conftest import KEYS

pytestmark = pytest.mark.integration

ALPHA, BETA = list(KEYS)


def test_session_cookie_stands_in_for_the_bearer_key(platform: Platform) -> None:
    platform.api()
    with httpx.Client(base_url=platform.url, timeout=30) as anonymous:
        assert anonymous.post("/ui/session", json={}).status_code == 422
        bad = anonymous.post("/ui/session", json={"api_key": "nope"})
        assert bad.status_code == 401
        assert bad.json()["error"]["code"] == "unauthorized"
        assert anonymous.get("/ui/session").status_code == 401

        good = anonymous.post("/ui/session", json={"api_key": ALPHA})
        assert good.status_code == 200
        assert good.json()["project"] == "alpha" and good.json()["role"] == "admin"
        assert "dlq:manage" in good.json()["permissions"]
        cookie = good.headers["set-cookie"].lower()
        for flag in ("httponly", "secure", "samesite=strict", "path=/"):
            assert flag in cookie

        mine = submit(anonymous, {"model": "echo", "action": "generate"}, **bearer(ALPHA))
        theirs = submit(anonymous, {"model": "echo", "action": "generate"}, **bearer(BETA))
        mine_id, theirs_id = mine.json()["task_id"], theirs.json()["task_id"]

    # httpx keeps Secure cookies only for https; hand the cookie over as a browser would.
    jar = {"autoglm_session": BETA}  # a developer of project beta
    with httpx.Client(base_url=platform.url, timeout=30, cookies=jar) as session:
        assert session.get("/ui/session").json()["project"] == "beta"
        assert session.get(f"/v1/tasks/{theirs_id}").status_code == 200
        assert session.get(f"/v1/tasks/{mine_id}").status_code == 404
        assert session.get("/v1/dlq").status_code == 403  # not a developer's permission
        refused = session.post(f"/v1/tasks/{theirs_id}/cancel")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
        allowed = session.post(f"/v1/tasks/{theirs_id}/cancel", headers={"x-autoglm-ui": "1"})
        assert allowed.status_code == 200
        out = session.delete("/ui/session")
        assert out.status_code == 204
        assert 'autoglm_session=""' in out.headers["set-cookie"]
    with httpx.Client(
        base_url=platform.url, timeout=30, cookies={"autoglm_session": "x"}
    ) as forged:
        assert forged.get(f"/v1/tasks/{mine_id}").status_code == 401


def test_pages_and_assets_are_served_with_a_strict_policy(platform: Platform) -> None:
    platform.api()
    with platform.client() as client:
        page = client.get("/ui")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        script = client.get("/ui/static/app.js")
        assert script.status_code == 200
        assert script.headers["x-content-type-options"] == "nosniff"
        assert client.get("/ui/static/vendor/uplot.iife.min.js").status_code == 200
        assert client.get("/ui/static/../../api/auth.py").status_code == 404
        paths = client.get("/openapi.json").json()["paths"]
        assert set(paths["/ui/session"]) == {"get", "post", "delete"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
