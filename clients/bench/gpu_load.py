"""How busy the GPUs are while a bench runs: NVML's utilisation, sampled in a thread and averaged."""

from __future__ import annotations

import threading

import torch

SAMPLE_S = 0.1  # seconds between samples (NVML's own sampling period is 1/6 s to 1 s)


class GpuLoad:
    """Mean GPU utilisation (percent of time a kernel ran, NVML) over ``devices`` between :meth:`start`
    and :meth:`stop`; ``None`` where there is no CUDA device or NVML (``nvidia-ml-py``) is not installed."""

    def __init__(self, devices: list[torch.device]):
        self.devices = [d for d in devices if d.type == "cuda"]
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="gpu-load", daemon=True)

    def available(self) -> bool:
        if not self.devices:
            return False
        try:
            torch.cuda.utilization(self.devices[0])
        except (ModuleNotFoundError, RuntimeError, ValueError):  # no NVML bindings, or NVML cannot read the device
            return False
        return True

    def start(self) -> GpuLoad:
        if self.available():
            self._thread.start()
        return self

    def stop(self) -> float | None:
        """Mean utilisation in percent over the devices and the samples so far."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.samples.append(sum(torch.cuda.utilization(d) for d in self.devices) / len(self.devices))
