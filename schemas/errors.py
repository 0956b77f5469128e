"""The error body of every non-2xx answer: `{"error": {"code", "message", "details"}}`."""

from __future__ import annotations

from typing import Any

from schemas.task import Frozen


class ErrorDetail(Frozen):
    code: str
    message: str
    details: Any = None


class ErrorBody(Frozen):
    error: ErrorDetail

    @classmethod
    def of(cls, code: str, message: str, details: Any = None) -> ErrorBody:
        return cls(error=ErrorDetail(code=code, message=message, details=details))
