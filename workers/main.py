"""`autoglm worker --model NAME`: one inference worker process."""

from __future__ import annotations

import logging
import os
import signal
import sys

from mcp.heap import settle_the_heap
from mcp.heartbeat import Heartbeat
from mcp.kafka import ensure_topics
from mcp.registry import ModelRegistry
from mcp.settings import ModelSpec, Settings, get_settings
from mcp.telemetry.gpu import install_gpu_metrics
from mcp.telemetry.process import start_telemetry
from mcp.threads import share_the_interpreter
from mcp.transaction import InstanceFenced
from workers.backends import Backend, make_backend
from workers.slot import FENCED_EXIT
from workers.worker import InferenceWorker

log = logging.getLogger(__name__)

FORCED_EXIT = 130
"""The exit status after a second SIGTERM or SIGINT cut the drain short."""


def load_backend(spec: ModelSpec, settings: Settings) -> Backend:
    backend = make_backend(spec, settings)
    backend.load()
    return backend


def run(model: str, slot: str = "0", burst: bool = False, metrics_port: int | None = None) -> int:
    settings = get_settings()
    start_telemetry("worker", settings, metrics_port, model=model, worker_id=f"{model}.{slot}")
    share_the_interpreter(settings)
    registry = ModelRegistry(settings)
    spec = registry.get(model)
    if spec is None:
        print(f"worker: unknown model {model!r}; known: {sorted(registry.specs)}")
        return 2
    ensure_topics(settings, [model])
    backend = load_backend(spec, settings)
    worker = InferenceWorker(settings, spec, backend, slot=slot, burst=burst)
    worker.telemetry.watch_lag(settings, worker.owned_partitions)
    install_gpu_metrics(model)

    def stop(signum: int, _frame: object) -> None:
        if worker.stopping.is_set():
            # A second signal: stop now, as a crash would (what was not committed runs again
            # on the partitions' next owner; the heartbeat shows this worker failed).
            log.warning("signal %d again: exiting at once, without draining", signum)
            os._exit(FORCED_EXIT)
        log.info(
            "signal %d: draining in-flight work, then leaving the group (again: exit at once)",
            signum,
        )
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    heartbeat = Heartbeat(settings, worker.worker_id, worker.info, worker.store.redis)
    heartbeat.start()
    settle_the_heap(settings)
    log.info("worker %s ready", worker.worker_id)
    try:
        worker.run()
    except InstanceFenced as exc:
        log.error("worker %s stops: %s", worker.worker_id, exc)
        heartbeat.stop(forget=False)
        return FENCED_EXIT
    heartbeat.stop()
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1] if len(sys.argv) > 1 else "echo"))
