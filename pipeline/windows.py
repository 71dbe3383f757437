"""Cutting a clip into fixed-length windows with a hop."""

from __future__ import annotations

import numpy as np

from .errors import ParameterError


def window_starts(n_samples: int, window: int, hop: int) -> np.ndarray:
    """Start sample of each window ``[n_windows]``: 0, hop, 2*hop, ... while a whole window fits.

    A clip shorter than one window still gets one window (zero-padded by :func:`cut_windows`);
    a tail shorter than the hop past the last whole window is covered by one final window
    that ends at the clip's end, so no audio is left unheard.
    """
    if window <= 0 or hop <= 0:
        raise ParameterError(f"window and hop must be positive samples, got {window}, {hop}")
    if n_samples <= window:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n_samples - window + 1, hop, dtype=np.int64)
    if starts[-1] + window < n_samples:
        starts = np.append(starts, n_samples - window)
    return starts


def cut_windows(audio: np.ndarray, window: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """``audio: [samples]`` -> ``(windows [n, window], starts [n])``; short clips are zero-padded."""
    if audio.ndim != 1:
        raise ParameterError(f"audio must be [samples], got shape {audio.shape}")
    if len(audio) < window:
        audio = np.pad(audio, (0, window - len(audio)))
    starts = window_starts(len(audio), window, hop)
    index = starts[:, None] + np.arange(window)[None, :]
    return audio[index], starts


LEVEL_FLOOR_DB = -120.0  # dBFS reported for digital silence


def levels_dbfs(windows: np.ndarray) -> np.ndarray:
    """``windows: float [n, samples]`` (full scale 1.0) -> RMS level of each, dBFS ``float64 [n]``."""
    windows = np.atleast_2d(np.asarray(windows, dtype=np.float64))
    power = np.mean(windows**2, axis=1) if windows.shape[1] else np.zeros(len(windows))
    return np.maximum(LEVEL_FLOOR_DB, 10 * np.log10(np.maximum(power, 1e-30)))
