"""`make bench`: every benchmark, each against a baseline measured in the same run.

Results go to bench/results/<name>.json. Pass names to run a subset:
`python -m bench pipeline webhooks`.
"""

from __future__ import annotations

import importlib
import platform
import sys
import time
from pathlib import Path
from typing import Any

import orjson

RESULTS = Path(__file__).resolve().parent / "results"
SUITES = (
    "pipeline",
    "mixed",
    "overload",
    "backlog",
    "auth",
    "phone",
    "webhooks",
    "models",
    "listing",
    "poll",
    "batch",
    "cluster",
    "grpc_vs_http",
    "replay",
    "telemetry",
    "celery_baseline",
    "submit",
    "soak",
)
# Also by name only: `celery_e2e` (the end-to-end half of celery_baseline, for short runs).


def machine() -> dict[str, Any]:
    import os

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        info["torch"] = None
    return info


def main(names: list[str]) -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in names or SUITES:
        print(f"== bench {name}", flush=True)
        out: dict[str, Any] = {"machine": machine(), "started_at": time.time()}
        try:
            importlib.import_module(f"bench.{name}").run(out)
        except Exception as exc:  # one failing suite must not hide the others' numbers
            print(f"bench {name} failed: {exc!r}", flush=True)
            out["error"] = repr(exc)
            failed.append(name)
        out["seconds"] = round(time.time() - out["started_at"], 1)
        path = RESULTS / f"{name}.json"
        path.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
        print(f"   -> {path}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
