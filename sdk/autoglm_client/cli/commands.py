"""What each client command does. Exit codes: 0 done, 1 the task did not succeed, 2 the API
refused or could not be reached."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from functools import wraps
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from autoglm_client.calls import TaskOptions
from autoglm_client.cli.progress import Progress
from autoglm_client.client import Client
from autoglm_client.errors import AutoGLMError
from autoglm_client.models import JsonDict, Task, TaskStatus

Command = Callable[[argparse.Namespace], int]


def _client(args: argparse.Namespace) -> Client:
    return Client(args.url, args.api_key)


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


def emit_json(value: Any) -> None:
    print(json.dumps(_dump(value), indent=2, ensure_ascii=False))


def table(rows: Iterable[dict[str, Any]], columns: list[str]) -> None:
    cells = [
        [str(row.get(c, "") if row.get(c) is not None else "") for c in columns] for row in rows
    ]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def handled(func: Command) -> Command:
    @wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except AutoGLMError as exc:
            print(f"autoglm: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130

    return run


def _json_arg(text: str | None, what: str) -> JsonDict:
    if not text:
        return {}
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise SystemExit(f"autoglm: {what} must be a JSON object")
    return value


def _options(args: argparse.Namespace) -> TaskOptions:
    options: TaskOptions = {}
    if args.callback_url:
        options["callback_url"] = args.callback_url
    if args.metadata:
        options["metadata"] = _json_arg(args.metadata, "--metadata")
    if args.priority:
        options["priority"] = args.priority
    if args.idempotency_key:
        options["idempotency_key"] = args.idempotency_key
    return options


def _task_exit(task: Task) -> int:
    return 0 if task.status is TaskStatus.SUCCEEDED else 1


@handled
def submit(args: argparse.Namespace) -> int:
    payload = _json_arg(args.payload, "--payload")
    for field, value in (("prompt", args.prompt), ("input", args.input)):
        if value is not None:
            payload[field] = value
    if args.max_tokens is not None:
        payload["max_tokens"] = args.max_tokens
    with _client(args) as client:
        accepted = client.submit(args.model, args.action, payload, **_options(args))
        if not args.wait:
            if args.json:
                emit_json(accepted)
            else:
                print(accepted.task_id)
            return 0
        task = Progress(client, quiet=args.json).follow(accepted.task_id, args.timeout)
    if args.json:
        emit_json(task)
    return _task_exit(task)


@handled
def tasks_wait(args: argparse.Namespace) -> int:
    with _client(args) as client:
        task = Progress(client, quiet=args.json).follow(args.task_id, args.timeout)
    if args.json:
        emit_json(task)
    return _task_exit(task)


@handled
def tasks_ls(args: argparse.Namespace) -> int:
    with _client(args) as client:
        found = list(
            client.list(
                status=args.status,
                model=args.model,
                action=args.action,
                page_size=min(args.limit, 100),
                max_items=args.limit,
            )
        )
    if args.json:
        emit_json(found)
    else:
        rows = [t.model_dump(mode="json") for t in found]
        table(rows, ["task_id", "model", "action", "status", "attempts", "created_at"])
    return 0


def _show(task: Task, as_json: bool) -> None:
    if as_json:
        emit_json(task)
        return
    view = task.model_dump(mode="json")
    for key in ("task_id", "model", "action", "status", "attempts", "created_at", "started_at"):
        print(f"{key:12} {view.get(key) or ''}")
    print(f"{'finished_at':12} {view.get('finished_at') or ''}")
    webhook = view.get("webhook") or {}
    print(f"{'webhook':12} {webhook.get('status')} ({webhook.get('attempts', 0)} attempts)")
    if task.error is not None:
        print(f"{'error':12} {task.error.code}: {task.error.message}")
    if task.result is not None:
        print(f"{'result':12} {json.dumps(task.result, ensure_ascii=False)}")


@handled
def tasks_get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _show(client.get(args.task_id), args.json)
    return 0


@handled
def tasks_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _show(client.cancel(args.task_id), args.json)
    return 0


@handled
def tasks_events(args: argparse.Namespace) -> int:
    with _client(args) as client:
        timeline = client.events(args.task_id)
    if args.json:
        emit_json(timeline)
    else:
        table(
            [e.model_dump(mode="json") for e in timeline], ["at", "status", "attempt", "worker_id"]
        )
    return 0


@handled
def batch_create(args: argparse.Namespace) -> int:
    with _client(args) as client:
        batch = client.create_batch(Path(args.file).read_bytes())
    if args.json:
        emit_json(batch)
    else:
        print(batch.batch_id)
    return 0


@handled
def batch_get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        batch = client.get_batch(args.batch_id)
    if args.json:
        emit_json(batch)
    else:
        counts = ", ".join(f"{k} {v}" for k, v in batch.counts.model_dump().items() if v)
        print(f"{batch.batch_id}  {batch.status}  {counts}")
    return 0


@handled
def batch_results(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for line in client.batch_results(args.batch_id):
            print(line.model_dump_json())
    return 0


@handled
def workers(args: argparse.Namespace) -> int:
    with _client(args) as client:
        found = client.workers()
    if args.json:
        emit_json(found)
    else:
        table([w.model_dump(mode="json") for w in found], ["worker_id", "model", "state", "age_s"])
    return 0


@handled
def queues(args: argparse.Namespace) -> int:
    with _client(args) as client:
        found = client.queues()
    if args.json or not found:
        emit_json(found)
    else:
        table(found, [k for k, v in found[0].items() if not isinstance(v, dict | list)])
    return 0


@handled
def models(args: argparse.Namespace) -> int:
    with _client(args) as client:
        found = client.models()
    if args.json or not found:
        emit_json(found)
    else:
        rows = [{**m, "actions": ",".join(m.get("actions", []))} for m in found]
        table(rows, [k for k in ("name", "backend", "actions") if k in found[0]])
    return 0


@handled
def webhook_secret(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.rotate:
            secrets = client.rotate_webhook_secret(overlap_s=args.overlap)
        else:
            secrets = client.webhook_secret()
    if args.json:
        emit_json(secrets)
    else:
        print(secrets.current)
        for old in secrets.secrets:
            if old.secret != secrets.current:
                print(f"# still signing until {old.expires_at}: {old.secret}", file=sys.stderr)
    return 0
