"""`python -m tests.integration.crash_after_commit MODEL`: an inference worker that kills itself
with SIGKILL right after its first commit that carried outcomes, before it writes them to Redis
itself (the fast path for polls). What it committed must still reach Redis, by the projector."""

from __future__ import annotations

import os
import signal
import sys

from workers.main import run
from workers.outcome import Outcome
from workers.worker import InferenceWorker


def _die(self: InferenceWorker, outcomes: list[Outcome]) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    InferenceWorker._publish_to_redis = _die  # type: ignore[method-assign]
    sys.exit(run(sys.argv[1] if len(sys.argv) > 1 else "echo"))
