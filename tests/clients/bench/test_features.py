"""``bench features``: the demo windows, the librosa reference and the pinned uploader it times."""

import numpy as np
import pytest
import torch

from instrumentd.clients.bench.features import WINDOW_HOP_SECONDS, PinnedUploader, demo_windows, librosa_mel
from instrumentd.pipeline.audio import load_audio
from instrumentd.pipeline.config import DEFAULT
from instrumentd.pipeline.demo import DEMO_CLIP
from instrumentd.pipeline.errors import ParameterError
from instrumentd.pipeline.mel import MelFrontEnd

from ...conftest import devices


def test_demo_windows_overlap_by_the_hop_and_wrap_around():
    audio = load_audio(DEMO_CLIP)
    hop = int(WINDOW_HOP_SECONDS * DEFAULT.sample_rate)
    n = 2 + len(audio) // hop  # enough windows to run past the end of the clip
    windows = demo_windows(n)
    assert windows.shape == (n, DEFAULT.clip_samples) and windows.dtype == np.float32
    assert windows.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(windows[1, : DEFAULT.clip_samples - hop], windows[0, hop:])
    last_start = (n - 1) * hop
    expected = np.tile(audio, 3)[last_start : last_start + DEFAULT.clip_samples]
    np.testing.assert_array_equal(windows[-1], expected)


def test_reference_mel_is_what_our_front_end_matches():
    window = demo_windows(1)[0]
    ours = MelFrontEnd(DEFAULT)(torch.from_numpy(window))[0].numpy()
    np.testing.assert_allclose(ours, librosa_mel(window), atol=1e-3, rtol=0)


@pytest.mark.parametrize("device", devices())
def test_uploads_arrive_intact_while_buffers_are_reused(device):
    uploader = PinnedUploader(device, n_buffers=2)
    rng = np.random.default_rng(0)
    # sizes that grow and shrink, more uploads than buffers, no synchronisation in between:
    # a buffer rewritten before its copy finished would corrupt an earlier tensor
    arrays = [rng.standard_normal(shape).astype(np.float32) for shape in
              [(4, 44100), (8, 44100), (2, 1000), (8, 44100), (3,), (16, 44100)]]
    tensors = [uploader.upload(a) for a in arrays]
    for a, t in zip(arrays, tensors):
        assert t.device.type == device and t.dtype == torch.float32 and tuple(t.shape) == a.shape
        np.testing.assert_array_equal(t.cpu().numpy(), a)


@pytest.mark.parametrize("device", devices())
def test_upload_is_a_copy_and_converts_to_float32(device):
    source = np.arange(6, dtype=np.int16).reshape(2, 3)
    uploaded = PinnedUploader(device).upload(source)
    source[:] = -1
    assert uploaded.dtype == torch.float32
    np.testing.assert_array_equal(uploaded.cpu().numpy(), np.arange(6).reshape(2, 3))


@pytest.mark.gpu
def test_staging_buffers_are_pinned():
    uploader = PinnedUploader("cuda", n_buffers=3)
    for _ in range(3):
        uploader.upload(np.ones((2, 100), np.float32))
    torch.cuda.synchronize()
    assert all(b is not None and b.is_pinned() for b in uploader._buffers)


def test_needs_a_buffer():
    with pytest.raises(ParameterError, match="n_buffers must be at least 1, got 0"):
        PinnedUploader("cpu", n_buffers=0)
