"""The numba Viterbi loops decode exactly what the torch steps decode: scores, traced states and the
streaming engine's f0, on the CPU."""

import numpy as np
import pytest
import torch

from instrumentd.pipeline import pyin_cpu
from instrumentd.pipeline.config import DEFAULT, TEN_MS
from instrumentd.pipeline.pyin import (
    batch_observations, decoder_kernels, frame, log_observations, normalise, padded_scores, viterbi, viterbi_step,
)
from instrumentd.pipeline.pyin_model import pyin_model
from instrumentd.pipeline.pyin_stream import StreamingPyin

from .test_pyin_kernels import streamed_f0, varied_audio

pytestmark = pytest.mark.skipif(not pyin_cpu.AVAILABLE, reason="numba is not installed")


def model_for(cfg):
    return pyin_model(cfg.sample_rate, cfg.pitch_fmin, cfg.pitch_fmax, cfg.pitch_frame_length, cfg.hop_length)


@pytest.fixture(scope="module")
def audio():
    return varied_audio()[:, : 44100]  # a second of each: notes in every register, a chord, noise, silence


@pytest.mark.parametrize("cfg", [DEFAULT, TEN_MS], ids=["hop1323", "hop441"])
def test_forward_equals_the_torch_steps_bit_for_bit(cfg, audio):
    model = model_for(cfg)
    log_obs = log_observations(*batch_observations(frame(torch.from_numpy(audio), model), model), model)
    batch, n_frames = log_obs.shape[:2]
    ours = padded_scores(n_frames, batch, model=model, device="cpu", dtype=torch.float32)
    normalise(log_obs[:, 0], ours[0], model)
    reference = ours.clone()
    pyin_cpu.forward(ours.transpose(0, 1), log_obs[:, 1:], 1, None, model)  # frame-major store, strided items
    for i in range(1, n_frames):
        normalise(viterbi_step(reference[i - 1], log_obs[:, i], model), reference[i], model)
    assert torch.equal(ours, reference)


def test_decoding_and_streaming_equal_the_torch_steps(audio, monkeypatch):
    """Whole clips (forward and trace back) and the streaming engine fed chunks of any size, with the
    loops and with the torch steps (the loops turned off), give the same states and f0."""
    model = model_for(DEFAULT)
    log_obs = log_observations(*batch_observations(frame(torch.from_numpy(audio), model), model), model)
    sizes = np.random.default_rng(5).integers(1, 9000, size=12)

    def decode():
        return viterbi(log_obs, model), streamed_f0(StreamingPyin(DEFAULT, lag=20), audio, sizes)

    assert decoder_kernels(log_obs) is pyin_cpu
    states, f0 = decode()
    monkeypatch.setattr(pyin_cpu, "AVAILABLE", False)
    assert decoder_kernels(log_obs) is None
    ref_states, ref_f0 = decode()
    assert torch.equal(states, ref_states)
    assert np.array_equal(f0, ref_f0, equal_nan=True) and np.isfinite(f0).sum() > 100


def test_other_dtypes_keep_the_torch_steps():
    assert decoder_kernels(torch.zeros(2, dtype=torch.float64)) is None


def test_the_trace_back_breaks_ties_as_the_torch_steps():
    """Paths whose best predecessors tie (level scores around a hole at the path's own bin: the
    transition band is symmetric, so the bins either side score the same) go to the lower state, as
    :func:`predecessor`; a path into an empty row (every candidate -inf) goes where it goes."""
    from instrumentd.pipeline.pyin import best_state, predecessor

    model = model_for(DEFAULT)
    n_bins, width, half = model.n_bins, model.width, model.width // 2
    rng = np.random.default_rng(2)
    rows = padded_scores(5, model=model, device="cpu", dtype=torch.float32)
    rows[..., half : half + n_bins] = torch.from_numpy(-rng.random((5, 2, n_bins), np.float32))
    states = torch.tensor([170, n_bins + 300, 420, 5])
    for path, state in enumerate(states[:3].tolist()):  # row path holds a tie for the path's state
        pitch, to = state % n_bins, state // n_bins
        rows[path, :, pitch : pitch + width] = 0.0
        rows[path, to, pitch + half] = -np.inf
    rows[4] = -np.inf
    start = torch.tensor([1, 2, 3, 5])
    overall = best_state(rows, model).flatten()
    expected = predecessor(rows, overall, start - 1, states, model)
    assert expected[:3].tolist() == [170 - 1, n_bins + 300 - 1, 420 - 1]  # the lower of the two tied bins
    assert torch.equal(pyin_cpu.backtrack(rows, overall, start, states, 1, 1, model)[:, 0], expected)
