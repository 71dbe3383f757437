"""GPU utilisation during a bench: NVML sampled in a thread; nothing on a CPU."""

import time

import pytest
import torch

from instrumentd.clients.bench.gpu_load import GpuLoad


def test_no_gpu_no_figure():
    load = GpuLoad([torch.device("cpu")]).start()
    time.sleep(0.3)
    assert load.stop() is None and load.samples == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_busy_gpu_reads_busy_and_an_idle_one_reads_less():
    device = torch.device("cuda")
    if not GpuLoad([device]).available():
        pytest.skip("NVML bindings (nvidia-ml-py) are not installed")
    a = torch.randn(4096, 4096, device=device)
    busy = GpuLoad([device]).start()
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        for _ in range(20):
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize(device)
    busy_pct = busy.stop()
    idle = GpuLoad([device]).start()
    time.sleep(2.0)
    idle_pct = idle.stop()
    assert busy_pct is not None and busy_pct > 50, busy_pct
    assert idle_pct is not None and idle_pct < busy_pct, (idle_pct, busy_pct)
