"""CPU of a JVM's JIT compiler threads (the bench's Kafka broker), from /proc.

A fresh broker compiles its hot paths for minutes: on this 2-core machine its C2 compiler thread
took 0.45-0.7 of a core through a 30 s warm-up at 300 tasks/s and still 0.15-0.5 of a core for
the 30 s after, while the first configuration was measured (the configuration set apart in
`celery_e2e`), 0.0-0.1 later. `warm_until_compiled` keeps warming until it goes quiet."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def compiler_cpu_s(pid: int) -> float:
    """CPU seconds the JIT compiler threads (HotSpot's `C1 CompilerThre*`, `C2 ...`) used."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if name.startswith(("C1 ", "C2 ")):
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def warm_until_compiled(
    pid: int | None, warm: Callable[[float], object], step_s: float, quiet: float, most_s: float
) -> tuple[float, list[float]]:
    """`warm(step_s)` again while the JVM `pid`'s compilers used more than `quiet` cores in the
    last step, `most_s` at most. Returns the seconds it added and the compilers' cores per step."""
    spent, cores = 0.0, []
    while pid is not None and spent < most_s:
        before, began = compiler_cpu_s(pid), time.perf_counter()
        warm(step_s)
        cores.append(round((compiler_cpu_s(pid) - before) / (time.perf_counter() - began), 2))
        spent += step_s
        if cores[-1] < quiet:
            break
    return spent, cores
