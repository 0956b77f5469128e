"""GPU utilisation and memory per device through NVML (`nvidia-ml-py`), read at each scrape.

On a machine without an NVIDIA driver the collector is simply not installed: no series, no error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

log = logging.getLogger(__name__)


class GpuCollector(Collector):
    def __init__(self, nvml: Any, model: str) -> None:
        self.nvml = nvml
        self.model = model

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["model", "gpu"]
        util = GaugeMetricFamily(
            "autoglm_gpu_utilization_ratio",
            "Share of the last sample period a kernel ran on the GPU (NVML), 0-1",
            labels=labels,
        )
        used = GaugeMetricFamily(
            "autoglm_gpu_memory_used_bytes", "GPU memory in use (NVML)", labels=labels
        )
        total = GaugeMetricFamily(
            "autoglm_gpu_memory_total_bytes", "GPU memory installed (NVML)", labels=labels
        )
        nvml = self.nvml
        try:
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                values = [self.model, str(index)]
                util.add_metric(values, rates.gpu / 100)
                used.add_metric(values, float(memory.used))
                total.add_metric(values, float(memory.total))
        except nvml.NVMLError as exc:
            log.warning("NVML read failed: %s", exc)
        yield util
        yield used
        yield total


def install_gpu_metrics(model: str) -> bool:
    """Register the collector when NVML answers; False (and nothing registered) otherwise."""
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except Exception as exc:  # no driver, no library, no device: CPU-only is a normal case
        log.info("no NVIDIA GPU metrics (%s)", type(exc).__name__)
        return False
    if count == 0:
        return False
    REGISTRY.register(GpuCollector(pynvml, model))
    log.info("GPU metrics for %d device(s)", count)
    return True
