"""Mel front-end in torch, equal to ``librosa.feature.melspectrogram`` + ``librosa.power_to_db(ref=np.max)``.

Runs batched on CPU or CUDA. The STFT is computed in float64: float32 rounding in the
low-energy bands moves dB values by more than the 1e-3 dB parity budget.
"""

from __future__ import annotations

import librosa
import numpy as np
import torch

from .config import DEFAULT, FeatureConfig

AMIN = 1e-10  # power floor before log10, librosa's default


def mel_filterbank(cfg: FeatureConfig = DEFAULT) -> np.ndarray:
    """Slaney-normalised filterbank ``[n_mels, window_length // 2 + 1]`` (librosa.filters.mel)."""
    return librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.window_length, n_mels=cfg.n_mels)


def mel_band_centres(cfg: FeatureConfig = DEFAULT) -> np.ndarray:
    """Centre frequency in hz of each mel band ``[n_mels]``: the peak of its triangle."""
    return librosa.mel_frequencies(n_mels=cfg.n_mels + 2, fmin=0.0, fmax=cfg.sample_rate / 2)[1:-1]


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
