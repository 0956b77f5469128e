"""`autoglm`: the client command line (submit, tasks, batch, workers, queues, webhook-secret).

The platform's own distribution adds its server commands (api, worker, dispatcher, ...) to the
same `autoglm` command: whichever of the two installed the script, both sets answer.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from importlib import import_module

from autoglm_client.cli import commands

Command = Callable[[argparse.Namespace], int]
Parent = argparse.ArgumentParser


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="API base URL (default: $AUTOGLM_URL or :8000)")
    common.add_argument("--api-key", help="API key or token (default: $AUTOGLM_API_KEY)")
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    return common


def _submit(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Parent) -> None:
    submit = sub.add_parser("submit", parents=[common], help="submit a task (--wait: follow it)")
    submit.add_argument("--model", required=True)
    submit.add_argument("--action", default="generate")
    submit.add_argument("--prompt", help="payload.prompt (generate)")
    submit.add_argument("--input", help="payload.input (embed, classify)")
    submit.add_argument("--max-tokens", type=int, help="payload.max_tokens")
    submit.add_argument("--payload", help="payload as JSON, or @file.json")
    submit.add_argument("--callback-url")
    submit.add_argument("--metadata", help="metadata as JSON")
    submit.add_argument("--priority", choices=["high", "normal", "low"])
    submit.add_argument("--idempotency-key")
    submit.add_argument("--wait", action="store_true", help="show progress until it finishes")
    submit.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
    submit.set_defaults(func=commands.submit)


def _tasks(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Parent) -> None:
    tasks = sub.add_parser("tasks", help="list, show, follow and cancel tasks")
    verbs = tasks.add_subparsers(dest="verb", required=True)
    ls = verbs.add_parser("ls", parents=[common], help="list tasks, newest first")
    ls.add_argument("--status")
    ls.add_argument("--model")
    ls.add_argument("--action")
    ls.add_argument("--limit", type=int, default=20)
    ls.set_defaults(func=commands.tasks_ls)
    for verb, func, text in (
        ("get", commands.tasks_get, "show a task"),
        ("cancel", commands.tasks_cancel, "cancel a task"),
        ("events", commands.tasks_events, "a task's lifecycle timeline"),
        ("wait", commands.tasks_wait, "follow a task until it finishes"),
    ):
        parser = verbs.add_parser(verb, parents=[common], help=text)
        parser.add_argument("task_id")
        parser.set_defaults(func=func)
        if verb == "wait":
            parser.add_argument("--timeout", type=float)


def _batch(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Parent) -> None:
    batch = sub.add_parser("batch", help="JSONL batches: create, get, results")
    verbs = batch.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", parents=[common], help="upload a JSONL file")
    create.add_argument("file", help='one {"custom_id": ..., "body": <task>} per line')
    create.set_defaults(func=commands.batch_create)
    for verb, func in (("get", commands.batch_get), ("results", commands.batch_results)):
        parser = verbs.add_parser(verb, parents=[common])
        parser.add_argument("batch_id")
        parser.set_defaults(func=func)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the client commands to an `autoglm` parser."""
    common = _common()
    _submit(sub, common)
    _tasks(sub, common)
    _batch(sub, common)
    for name, func, text in (
        ("workers", commands.workers, "workers and their heartbeats"),
        ("queues", commands.queues, "backlog per model"),
        ("models", commands.models, "the models the platform serves"),
    ):
        sub.add_parser(name, parents=[common], help=text).set_defaults(func=func)
    secret = sub.add_parser("webhook-secret", parents=[common], help="the project's signing secret")
    secret.add_argument("--rotate", action="store_true", help="make a new one")
    secret.add_argument("--overlap", type=float, help="seconds the old one keeps signing")
    secret.set_defaults(func=commands.webhook_secret)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autoglm", description=__doc__)
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        server: Callable[[list[str] | None], int] = import_module("autoglm").main
    except (ImportError, AttributeError):
        args = build_parser().parse_args(argv)
        func: Command = args.func
        return func(args)
    return server(argv)  # the platform is installed too: its parser has both sets


if __name__ == "__main__":
    sys.exit(main())
