"""The root error of the platform and the error body of every non-2xx answer.

`AutoGLMError` lives here, below everything else, because the message layer raises errors too
(`DecodeError`); the rest of the tree is in `mcp/errors.py`. An error's `code` is what
`ErrorBody.error.code` says about it.
"""

from __future__ import annotations

from typing import Any

from schemas.task import Frozen


class AutoGLMError(Exception):
    """Root of every error the platform raises on purpose."""

    code = "internal_error"
    permanent = False
    """True when running the same task again cannot succeed (no retry)."""
    retry_after_s: int | None = None
    """Seconds a client should wait before trying again, when waiting helps."""

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ErrorDetail(Frozen):
    code: str
    message: str
    details: Any = None


class ErrorBody(Frozen):
    error: ErrorDetail

    @classmethod
    def of(cls, code: str, message: str, details: Any = None) -> ErrorBody:
        return cls(error=ErrorDetail(code=code, message=message, details=details))
