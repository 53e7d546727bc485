"""System metrics: CPU, memory and GPU use sampled into a run's metrics under ``system/``.

``tracker.start(..., system_metrics=True)`` (or ``[tracker] system_metrics = true`` in the
store's ``config.toml``) starts one :class:`SystemSampler` thread for the run. Every
``interval`` seconds it appends values to the run's buffer, as ``tracker.log`` does, so the
logging hot loop pays nothing for it; the flusher writes them with the rest. It stops (and is
joined) when the run ends, before the run's last flush.

Sources, each used only where it works (a missing one is skipped without a word):

- psutil (the ``system`` extra): ``system/cpu_percent``, ``system/memory_percent``,
  ``system/memory_used_gb`` of the machine, and ``system/process_cpu_percent``,
  ``system/process_rss_mb``, ``system/process_threads`` of this process;
- NVML (``nvidia-ml-py``): per GPU ``system/gpu0/utilization_percent``,
  ``.../memory_used_mb``, ``.../memory_percent``, ``.../temperature_c``, ``.../power_w``.

Values are logged with the sample's number as step (0, 1, 2, ...).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["DEFAULT_INTERVAL", "SystemSampler", "sources"]

DEFAULT_INTERVAL = 10.0

Source = Callable[[], dict[str, float]]


def _psutil_sources() -> list[Source]:
    try:
        import psutil
    except ImportError:
        return []
    proc = psutil.Process()
    # cpu_percent compares with the previous call: prime both now, so the first sample
    # covers the first interval.
    psutil.cpu_percent(None)
    proc.cpu_percent(None)

    def machine() -> dict[str, float]:
        mem = psutil.virtual_memory()
        return {
            "system/cpu_percent": float(psutil.cpu_percent(None)),
            "system/memory_percent": float(mem.percent),
            "system/memory_used_gb": mem.used / 2**30,
        }

    def process() -> dict[str, float]:
        with proc.oneshot():
            return {
                "system/process_cpu_percent": float(proc.cpu_percent(None)),
                "system/process_rss_mb": proc.memory_info().rss / 2**20,
                "system/process_threads": float(proc.num_threads()),
            }

    return [machine, process]


def _nvml_sources() -> list[Source]:
    try:
        import pynvml

        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # no package, no driver, no GPU
        return []

    def gpus() -> dict[str, float]:
        out: dict[str, float] = {}
        for i, handle in enumerate(handles):
            prefix = f"system/gpu{i}/"
            with contextlib.suppress(Exception):
                out[prefix + "utilization_percent"] = float(
                    pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
                )
            with contextlib.suppress(Exception):
                mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
                out[prefix + "memory_used_mb"] = mem.used / 2**20
                out[prefix + "memory_percent"] = 100.0 * mem.used / mem.total
            with contextlib.suppress(Exception):
                out[prefix + "temperature_c"] = float(
                    pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)
                )
            with contextlib.suppress(Exception):
                out[prefix + "power_w"] = pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
        return out

    return [gpus] if handles else []


def sources() -> list[Source]:
    """The samplers that work on this machine (possibly none)."""
    return [*_psutil_sources(), *_nvml_sources()]


class SystemSampler:
    """A thread appending system metrics to a live run every ``interval`` seconds."""

    def __init__(self, run: Any, interval: float = DEFAULT_INTERVAL) -> None:
        self.run = run
        self.interval = max(float(interval), 0.01)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="coralx-system", daemon=True)
        self.samples = 0

    def start(self) -> SystemSampler:
        # The sources are set up on the thread: importing psutil and opening NVML take tens
        # of milliseconds that start() need not wait for.
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling; returns once the thread has ended (no value is appended after)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        run = self.run
        try:
            found = sources()
        except Exception:
            return
        if not found:
            return  # nothing to sample on this machine
        while not self._stop.wait(self.interval):
            values: dict[str, float] = {}
            for source in found:
                with contextlib.suppress(Exception):  # a source that fails is left out
                    values.update(source())
            step = self.samples
            for name, value in values.items():
                if name not in run.names:
                    run.add_name(name)
                run.buffer.append((name, float(value), step))
            self.samples += 1
