"""Timing for benchmarks: wall-clock seconds per call, with the device's queue drained."""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

__all__ = ["sync", "time_call"]


def sync(device: torch.device) -> None:
    """Wait until ``device`` has finished its queued work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device, min_seconds: float, warmup: int = 3) -> float:
    """Median seconds per call of ``fn()`` after ``warmup`` calls, over repeats filling at least
    ``min_seconds`` (at least 3)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_seconds or len(times) < 3:
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]
