"""Device specs -> torch devices (one resolver for the daemon, the commands and the benchmarks), and
device guards: a CPU device changes nothing; a CUDA device is current inside the block only."""

import contextlib

import pytest
import torch

from instrumentd.pipeline.devices import check_devices, guard, resolve_device, resolve_devices
from instrumentd.pipeline.errors import ParameterError


@pytest.mark.parametrize("spec, names", [
    ("auto", ["auto"]),
    ("cpu", ["cpu"]),
    ("cpu, cpu", ["cpu", "cpu"]),
    ("cuda:0,cuda:1", ["cuda:0", "cuda:1"]),
])
def test_specs_are_read_without_touching_cuda(spec, names):
    assert check_devices(spec) == names


@pytest.mark.parametrize("spec, fragment", [
    ("gpu", "got 'gpu'"),
    ("auto,cpu", "got 'auto,cpu'"),
    ("cuda:0,", "got 'cuda:0,'"),
    ("cuda:1,cuda:1", "names cuda:1 twice"),
])
def test_bad_specs_name_the_value(spec, fragment):
    with pytest.raises(ParameterError, match=fragment):
        check_devices(spec)


def test_auto_is_every_gpu_else_the_cpu_and_one_device_is_its_first():
    n = torch.cuda.device_count()
    every = [torch.device("cuda", i) for i in range(n)] or [torch.device("cpu")]
    assert resolve_devices("auto") == every
    assert resolve_device("auto") == every[0]
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_devices("cpu,cpu") == [torch.device("cpu")] * 2


@pytest.mark.parametrize("spec, count", [("cpu", 1), ("cpu,cpu", 2), ("cpu, cpu ,cpu", 3)])
def test_cpu_lists_resolve_to_one_worker_device_each(spec, count):
    assert resolve_devices(spec) == [torch.device("cpu")] * count


@pytest.mark.parametrize("spec", ["cuda:99", "cpu,cuda:99"])
def test_a_gpu_this_machine_lacks_is_named_alone_or_in_a_list(spec):
    with pytest.raises(ParameterError, match="'cuda:99' asked for"):
        resolve_devices(spec)


@pytest.mark.gpu
def test_an_indexless_cuda_gets_the_current_index():
    # per-device caches must not tell "cuda" from "cuda:0"
    assert resolve_devices("cpu, cuda") == [torch.device("cpu"), torch.device("cuda", torch.cuda.current_device())]


def test_one_device_is_refused_a_list_and_a_missing_gpu_is_named():
    with pytest.raises(ParameterError, match="one device is needed here"):
        resolve_device("cpu,cpu")
    n = torch.cuda.device_count()
    with pytest.raises(ParameterError, match=f"'cuda:{n}' asked for"):
        resolve_device(f"cuda:{n}")


def test_guard_on_a_cpu_device_changes_nothing():
    assert isinstance(guard("cpu"), contextlib.nullcontext)


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
