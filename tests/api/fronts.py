"""What the tests of `api.front.Front` share: a stand-in for the stack behind it and the app's
exception handlers."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.responses import Response

from api import errors


class Stack:
    """Stands for the whole middleware stack: counts what reaches it."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await Response(b"stack", status_code=200)(scope, receive, send)


def handlers() -> Any:
    """The exception handlers the app installs (`api.errors.install`)."""
    app = FastAPI()
    errors.install(app)
    return app.exception_handlers
