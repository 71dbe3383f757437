"""Device guards: a CPU device changes nothing; a CUDA device is current inside the block only."""

import pytest
import torch

from instrumentd.pipeline.devices import guard


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_a_cpu_guard_is_a_no_op(device):
    with guard(device) as inside:
        assert inside is None


@pytest.mark.gpu
def test_a_cuda_guard_makes_its_device_current_for_the_block():
    last = torch.cuda.device_count() - 1
    before = torch.cuda.current_device()
    with guard(f"cuda:{last}"):
        assert torch.cuda.current_device() == last
    assert torch.cuda.current_device() == before
