"""Pitch engines: functions ``audio[batch, samples] -> f0[batch, frames]`` in hz, NaN where unvoiced.

An engine is any callable with the signature of :data:`PitchEngine`; the feature pipeline takes
one as an argument. ``librosa_pyin`` is the reference; ``torch_pyin`` (the default) computes the same
f0 in torch, batched, on CPU or CUDA; other engines register in ``ENGINES``.
"""

from __future__ import annotations

from typing import Callable

import librosa
import numpy as np
import torch

from .config import DEFAULT, FeatureConfig
from .errors import ParameterError
from .pyin import pyin

PitchEngine = Callable[[np.ndarray | torch.Tensor, FeatureConfig], np.ndarray]


def pyin_settings(cfg: FeatureConfig) -> dict:
    """DESIGN.md's pYIN arguments from ``cfg``; librosa.pyin's defaults for the rest."""
    return {
        "fmin": cfg.pitch_fmin,
        "fmax": cfg.pitch_fmax,
        "sr": cfg.sample_rate,
        "frame_length": cfg.pitch_frame_length,
        "hop_length": cfg.hop_length,
        "center": True,
    }


def librosa_pyin(audio: np.ndarray | torch.Tensor, cfg: FeatureConfig = DEFAULT) -> np.ndarray:
    """Reference engine: ``librosa.pyin`` with DESIGN.md's settings.

    Parameters
    ----------
    audio : float32 [batch, samples] at ``cfg.sample_rate``; a tensor is copied to the CPU
    cfg : feature configuration (fmin, fmax, frame length, hop)

    Returns
    -------
    f0 : float32 [batch, samples // hop_length], hz, NaN where unvoiced
    """
    audio = np.atleast_2d(torch.as_tensor(audio).cpu().numpy())
    n_frames = audio.shape[-1] // cfg.hop_length
    f0, _, _ = librosa.pyin(audio, **pyin_settings(cfg))
    return f0[..., :n_frames].astype(np.float32)


def torch_pyin(audio: np.ndarray | torch.Tensor, cfg: FeatureConfig = DEFAULT) -> np.ndarray:
    """Our batched torch pYIN (:func:`instrumentd.pipeline.pyin.pyin`) with the same settings as the reference.

    Parameters
    ----------
    audio : float32 [batch, samples] at ``cfg.sample_rate``; a tensor is processed on its own device
    cfg : feature configuration (fmin, fmax, frame length, hop)

    Returns
    -------
    f0 : float32 [batch, samples // hop_length], hz, NaN where unvoiced
    """
    audio = torch.as_tensor(audio)
    audio = audio.reshape(-1, audio.shape[-1])
    n_frames = audio.shape[-1] // cfg.hop_length
    f0, _, _ = pyin(audio, **pyin_settings(cfg))
    return f0[..., :n_frames].to(torch.float32).cpu().numpy()


ENGINES: dict[str, PitchEngine] = {"librosa": librosa_pyin, "torch": torch_pyin}
DEFAULT_ENGINE = "torch"


def get_engine(name: str) -> PitchEngine:
    """The engine registered as ``name``; a clear error lists the choices."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ParameterError(f"unknown pitch engine {name!r}; choose from {sorted(ENGINES)}") from None
