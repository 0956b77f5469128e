"""Only the end-to-end half of `celery_baseline`: submit -> visible to a poller at 100 and
1,000 tasks/s (`BENCH_E2E_RATES`), ours and Celery in the same run; a short run for tuning.

`BENCH_E2E_VARIANTS` (JSON: name -> settings as environment variables) measures several
configurations of ours in the same run, e.g.
`'{"window_2ms": {"AUTOGLM_KAFKA__GROUP_COMMIT_WAIT_ALONE": "true"}, "defaults": {}}'`. The
broker is warmed up by tasks through the whole pipeline first (`BENCH_E2E_WARM_UP_S`).
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from bench.celery_baseline import e2e


def run(out: dict[str, Any]) -> None:
    raw = os.environ.get("BENCH_E2E_VARIANTS")
    variants: dict[str, dict[str, str]] | None = orjson.loads(raw) if raw else None
    e2e(out, variants)


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main(["celery_e2e"]))
