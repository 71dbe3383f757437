"""The constants of a pYIN configuration are librosa.pyin's, and the FFT autocorrelation is the direct sum."""

import librosa
import numpy as np
import pytest
import torch

from instrumentd.pipeline.config import DEFAULT
from instrumentd.pipeline.errors import ParameterError
from instrumentd.pipeline.pyin_model import LOG_TINY, autocorrelation, fft_batch, pyin_model

from ..conftest import SR


@pytest.mark.parametrize("hop, width", [(DEFAULT.hop_length, 131), (441, 41)])
def test_transition_band_is_librosas_local_matrix(hop, width):
    m = pyin_model(SR, DEFAULT.pitch_fmin, DEFAULT.pitch_fmax, 4096, hop)
    assert (m.n_bins, m.width) == (600, width)
    dense = librosa.sequence.transition_local(m.n_bins, width, window="triangle", wrap=False)
    band = np.exp(m.log_band)
    half = width // 2
    rebuilt = np.zeros_like(dense)
    for j in range(m.n_bins):
        for d in range(width):
            if 0 <= j + d - half < m.n_bins:
                rebuilt[j + d - half, j] = band[j, d]
    np.testing.assert_allclose(rebuilt, dense, rtol=1e-12, atol=0)


def test_model_matches_librosas_constants():
    m = pyin_model(SR, DEFAULT.pitch_fmin, DEFAULT.pitch_fmax, 4096, DEFAULT.hop_length)
    assert (m.min_period, m.max_period, m.n_bins, m.width) == (21, 675, 600, 131)
    assert m.beta_probs.sum() == pytest.approx(1.0)
    assert LOG_TINY == pytest.approx(-708.396, abs=1e-3)  # log of float64's smallest normal, librosa's floor


def test_a_bad_range_is_named():
    with pytest.raises(ParameterError, match="fmin"):
        pyin_model(SR, 500.0, 400.0, 4096)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [3, 37])  # 37 frames go through cuFFT as 40
def test_autocorrelation_is_the_direct_sum(device, n):
    m = pyin_model(8000, 400.0, 2000.0, 64, 16)
    frames = torch.from_numpy(np.random.default_rng(0).standard_normal((n, 64))).to(torch.float64)
    r = autocorrelation(frames.to(device), m).cpu()
    x = frames.numpy()
    direct = np.stack([[np.dot(row[: 64 - k], row[k:]) for k in range(m.max_period + 1)] for row in x])
    assert r.shape == (n, m.max_period + 1)
    np.testing.assert_allclose(r.numpy(), direct, rtol=1e-9, atol=1e-9)


def test_fft_batches_on_a_gpu_take_few_sizes():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    sizes = [fft_batch(n, cuda) for n in range(1, 5000)]
    assert all(n <= b <= max(16, n + n / 8) for n, b in zip(range(1, 5000), sizes))
    assert len(set(sizes) - set(range(17))) <= 8 * 9  # 8 an octave from 17 to 4999
    assert [fft_batch(n, cpu) for n in (1, 37, 4999)] == [1, 37, 4999]
