"""`autoglm`: the command line of autoglm-mcp.

Server commands: api, grpc, worker, dispatcher, projector, replay, keys, dev. The client commands
(submit, tasks, batch, workers, queues, models, webhook-secret) come from the SDK,
`autoglm-client` (`sdk/`), when it is installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

Command = Callable[[argparse.Namespace], int]


def _api(args: argparse.Namespace) -> int:
    from api.main import run

    return run(host=args.host, port=args.port, processes=args.processes, slot=args.slot)


def _grpc(args: argparse.Namespace) -> int:
    from api.rpc.server import run

    return run(host=args.host, port=args.port)


def _worker(args: argparse.Namespace) -> int:
    from workers.main import run

    return run(model=args.model, slot=args.slot, burst=args.burst, metrics_port=args.metrics_port)


def _dispatcher(args: argparse.Namespace) -> int:
    from mcp.webhooks.main import run

    return run(slot=args.slot, metrics_port=args.metrics_port)


def _projector(args: argparse.Namespace) -> int:
    from mcp.projector import run

    return run(metrics_port=args.metrics_port)


def _replay(args: argparse.Namespace) -> int:
    from mcp.replay import run

    return run(flush=args.flush)


def _dev(args: argparse.Namespace) -> int:
    from workers.dev import run

    return run(kafka=args.kafka, redis=args.redis, port=args.port)


def _keys(args: argparse.Namespace) -> int:
    from api.auth.cli import run

    return run(args)


def _metrics_port(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus /metrics on this port (default: telemetry.metrics_port)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autoglm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    api = sub.add_parser("api", help="serve the HTTP API (and the Redis projector)")
    api.add_argument("--host", default=None)
    api.add_argument("--port", type=int, default=None)
    procs = api.add_mutually_exclusive_group()
    procs.add_argument(
        "--processes",
        type=int,
        default=1,
        help="API processes sharing the port, slots 0..N-1 (each its own transactional.id)",
    )
    procs.add_argument(
        "--slot", default=None, help="run as this stable slot: instance id <instance_id>-<slot>"
    )
    api.set_defaults(func=_api)

    grpc = sub.add_parser("grpc", help="serve the gRPC API (and the Redis projector)")
    grpc.add_argument("--host", default=None)
    grpc.add_argument("--port", type=int, default=None)
    grpc.set_defaults(func=_grpc)

    worker = sub.add_parser("worker", help="run inference for one model")
    worker.add_argument("--model", required=True)
    worker.add_argument("--slot", default="0", help="stable slot id: fixes the transactional.id")
    worker.add_argument("--burst", action="store_true", help="exit once the queue is drained")
    _metrics_port(worker)
    worker.set_defaults(func=_worker)

    dispatcher = sub.add_parser("dispatcher", help="deliver webhooks")
    dispatcher.add_argument("--slot", default="0")
    _metrics_port(dispatcher)
    dispatcher.set_defaults(func=_dispatcher)

    projector = sub.add_parser("projector", help="apply task-events to Redis (standalone)")
    _metrics_port(projector)
    projector.set_defaults(func=_projector)

    replay = sub.add_parser(
        "replay", help="rebuild Redis (tasks, idempotency keys, webhooks) from Kafka"
    )
    replay.add_argument("--flush", action="store_true", help="delete task keys first")
    replay.set_defaults(func=_replay)

    keys = sub.add_parser("keys", help="create, list and revoke API keys (admin)")
    keys.add_argument("--url", default=None, help="the API, e.g. http://127.0.0.1:8000")
    keys.add_argument("--token", default=None, help="an admin API key or JWT")
    keys.set_defaults(func=_keys)
    key_actions = keys.add_subparsers(dest="keys_command", required=True)
    create = key_actions.add_parser("create", help="create a key; its secret is printed once")
    create.add_argument("--project", required=True)
    create.add_argument("--role", required=True, choices=["admin", "developer", "viewer"])
    create.add_argument("--name", default="")
    create.add_argument("--expires-in", type=int, default=None, help="seconds until it expires")
    listing = key_actions.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--project", default=None)
    revoke = key_actions.add_parser("revoke", help="revoke a key on every API process")
    revoke.add_argument("key_id")

    dev = sub.add_parser("dev", help="run api, workers and dispatcher on this machine")
    dev.add_argument("--kafka", default="127.0.0.1:9092")
    dev.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    dev.add_argument("--port", type=int, default=8000)
    dev.set_defaults(func=_dev)
    try:
        from autoglm_client.cli import register
    except ImportError:
        return parser
    register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    args = build_parser().parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except ValidationError as error:
        # A refused configuration (a placeholder secret outside dev mode, an unknown default
        # model...): say what, and exit without a traceback.
        if error.title != "Settings":
            raise
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in error.errors())
        print(f"autoglm {args.command}: configuration refused: {problems}", file=sys.stderr)
        return 78  # EX_CONFIG


if __name__ == "__main__":
    sys.exit(main())
