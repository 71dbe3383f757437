"""Mel front-end in torch, equal to ``librosa.feature.melspectrogram`` + ``librosa.power_to_db(ref=np.max)``.

Runs batched on CPU or CUDA. The STFT is computed in float64: float32 rounding in the
low-energy bands moves dB values by more than the 1e-3 dB parity budget.
"""

from __future__ import annotations

import numpy as np
import torch

from .config import DEFAULT, FeatureConfig

AMIN = 1e-10  # power floor before log10, librosa's default
# Slaney's mel scale (librosa's default, htk=False): linear to 1 kHz, logarithmic above
MEL_SP = 200.0 / 3  # hz per mel on the linear part
MIN_LOG_HZ = 1000.0  # hz where the logarithmic part begins
MIN_LOG_MEL = MIN_LOG_HZ / MEL_SP  # the same point in mels (15)
LOG_STEP = np.log(6.4) / 27.0  # natural-log hz per mel on the logarithmic part


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Frequencies in hz -> Slaney mels, float64 of the same shape (``librosa.hz_to_mel``)."""
    hz = np.asarray(hz, dtype=np.float64)
    mels = hz / MEL_SP
    log_part = hz >= MIN_LOG_HZ
    mels[log_part] = MIN_LOG_MEL + np.log(hz[log_part] / MIN_LOG_HZ) / LOG_STEP
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Slaney mels -> frequencies in hz, float64 of the same shape (``librosa.mel_to_hz``)."""
    mels = np.asarray(mels, dtype=np.float64)
    hz = MEL_SP * mels
    log_part = mels >= MIN_LOG_MEL
    hz[log_part] = MIN_LOG_HZ * np.exp(LOG_STEP * (mels[log_part] - MIN_LOG_MEL))
    return hz


def _mel_frequencies(n: int, fmax: float) -> np.ndarray:
    """``n`` frequencies in hz from 0 to ``fmax``, evenly spaced in mels: float64 [n] (``librosa.mel_frequencies``)."""
    return _mel_to_hz(np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([fmax]))[0], n))


def mel_filterbank(cfg: FeatureConfig = DEFAULT) -> np.ndarray:
    """Slaney-normalised filterbank ``float32 [n_mels, window_length // 2 + 1]``, equal to
    ``librosa.filters.mel(sr, n_fft=window_length, n_mels)`` (tested): each band a triangle from the
    centre of the band below to that of the band above, scaled to unit area. Computed here rather than
    by librosa, whose filters module loads scipy.signal and numba: a second of every daemon's start-up."""
    edges = _mel_frequencies(cfg.n_mels + 2, cfg.sample_rate / 2)  # hz: band i spans edges[i]..edges[i + 2]
    bins = np.fft.rfftfreq(n=cfg.window_length, d=1.0 / cfg.sample_rate)  # hz of each FFT bin
    widths = np.diff(edges)
    ramps = np.subtract.outer(edges, bins)
    weights = np.zeros((cfg.n_mels, len(bins)), dtype=np.float32)
    for i in range(cfg.n_mels):
        rising, falling = -ramps[i] / widths[i], ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, np.newaxis]
    return weights


def mel_band_centres(cfg: FeatureConfig = DEFAULT) -> np.ndarray:
    """Centre frequency in hz of each mel band ``[n_mels]``: the peak of its triangle."""
    return _mel_frequencies(cfg.n_mels + 2, cfg.sample_rate / 2)[1:-1]


def power_to_db(power: torch.Tensor, top_db: float) -> torch.Tensor:
    """``power: [batch, n_mels, frames]`` -> dB relative to each item's maximum, floored at ``-top_db``."""
    db = 10.0 * torch.log10(power.clamp_min(AMIN))
    ref = db.amax(dim=(-2, -1), keepdim=True)
    return (db - ref).clamp_min(-top_db)


class MelFrontEnd(torch.nn.Module):
    """``audio: [batch, samples]`` at ``cfg.sample_rate`` -> ``mel_db: float32 [batch, n_mels, frames]``.

    ``frames = samples // hop_length``: a centred STFT gives one more frame, which is dropped
    so that a 3 s clip is exactly ``cfg.n_frames`` (100) frames.
    """

    def __init__(self, cfg: FeatureConfig = DEFAULT):
        super().__init__()
        self.cfg = cfg
        self.register_buffer(
            "window", torch.hann_window(cfg.window_length, periodic=True, dtype=torch.float64), persistent=False
        )
        self.register_buffer(
            "filterbank", torch.from_numpy(mel_filterbank(cfg).astype(np.float64)), persistent=False
        )

    def power(self, audio: torch.Tensor) -> torch.Tensor:
        """Mel power ``float64 [batch, n_mels, frames]`` (before dB)."""
        cfg = self.cfg
        spec = torch.stft(
            audio.to(torch.float64),
            n_fft=cfg.window_length,
            hop_length=cfg.hop_length,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        n_frames = audio.shape[-1] // cfg.hop_length
        spec = spec[..., :n_frames]
        return torch.matmul(self.filterbank, spec.real.square() + spec.imag.square())

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.ndim == 1:
            audio = audio.unsqueeze(0)
        return power_to_db(self.power(audio), self.cfg.top_db).to(torch.float32)
