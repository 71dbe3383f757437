import numpy as np
import pytest
import torch

from instrumentd.pipeline import staging
from instrumentd.pipeline.staging import Staging

from ..conftest import devices


@pytest.mark.parametrize("device", devices())
def test_appended_audio_goes_up_in_one_block_in_order(device):
    st = Staging(torch.device(device))
    a, b = np.arange(5, dtype=np.float32), -np.arange(3, dtype=np.float32)
    assert st.append(a) == 0 and st.append(b) == 5
    flat = st.upload()
    assert flat.device.type == torch.device(device).type
    assert np.array_equal(flat.cpu().numpy(), np.concatenate([a, b]))
    assert st.used == 0


def test_growing_keeps_what_is_staged(monkeypatch):
    monkeypatch.setattr(staging, "INITIAL_SAMPLES", 4)
    st = Staging(torch.device("cpu"))
    parts = [np.full(n, i, np.float32) for i, n in enumerate([3, 2, 9, 1])]
    offsets = [st.append(p) for p in parts]
    assert offsets == [0, 3, 5, 14]
    assert np.array_equal(st.upload().numpy(), np.concatenate(parts))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_gpu_upload_finishes_before_the_buffer_is_written_again():
    """The buffer is page-locked and its upload asynchronous: audio appended right after an upload must
    not reach the tensor already sent. The GPU is kept busy first, so the upload is still queued when
    the next append comes: without the wait, that append would overwrite what is being sent."""
    st = Staging(torch.device("cuda"))
    assert st.pinned
    big = np.random.default_rng(0).standard_normal(1 << 22).astype(np.float32)
    st.append(big)
    torch.cuda._sleep(200_000_000)  # a kernel that spins ~0.1 s on the stream the upload queues behind
    sent = st.upload()
    st.append(np.zeros(1 << 22, np.float32))
    assert np.array_equal(sent.cpu().numpy(), big)
