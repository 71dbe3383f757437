import numpy as np
import torch

from instrumentd.pipeline.audio import load
from instrumentd.pipeline.bench_features import DEMO, WINDOW_HOP_SECONDS, demo_windows, librosa_mel
from instrumentd.pipeline.config import DEFAULT
from instrumentd.pipeline.mel import MelFrontEnd


def test_demo_windows_overlap_by_the_hop_and_wrap_around():
    audio = load(DEMO)
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
