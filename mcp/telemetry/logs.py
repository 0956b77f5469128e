"""Log lines as an operator's tools want them: plain text by default, or one JSON object per
line (`telemetry.json_logs`) with the process's model and worker id, and the `task_id` and
`trace_id` of any line about a task (passed as `extra=task_fields(task)`)."""

from __future__ import annotations

import faulthandler
import logging
import signal
from datetime import UTC, datetime
from typing import Any

import orjson

from mcp.settings import Settings
from mcp.telemetry.tracing import trace_id_of
from schemas import AsyncTask

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TASK_FIELDS = ("task_id", "trace_id", "model", "worker_id")


def task_fields(task: AsyncTask) -> dict[str, Any]:
    """`extra=` for a log call about `task`."""
    return {"task_id": task.task_id, "trace_id": trace_id_of(task.trace.traceparent)}


class JsonFormatter(logging.Formatter):
    def __init__(self, static: dict[str, str]) -> None:
        super().__init__()
        self.static = static

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **self.static,
        }
        for name in TASK_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


def configure_logging(settings: Settings, **static: str) -> None:
    """The root logger of a process: level, and text or JSON lines with `static` fields (the
    process's model, worker id…) on every line.

    Also `kill -USR1 <pid>`: where each thread of the process is, written at once to stderr
    (its log), even while the main thread waits in a call into C (a Kafka client, a model)."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    handler = logging.StreamHandler()
    if settings.telemetry.json_logs:
        handler.setFormatter(JsonFormatter(static))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
