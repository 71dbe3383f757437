"""Harmonic test tones generated with numpy: notes on random pitches, for benchmarks that need music-like audio.

No SoundFont and no renderer: a note is ``harmonics`` sine partials at 1/k level on a pitch drawn
from three octaves above A2 (110 hz), so pYIN finds it voiced and the mel has harmonic structure.
"""

from __future__ import annotations

import numpy as np

__all__ = ["harmonic_notes"]

LOWEST_HZ = 110.0  # A2
SEMITONES = 36  # pitches are drawn from three octaves above LOWEST_HZ
VIBRATO_HZ = 5.5


def harmonic_notes(seconds: float, sr: int = 44100, note_s: float = 0.5, harmonics: int = 5,
                   noise: float = 0.05, vibrato: float = 0.0, legato: float = 1.0, peak: float = 0.3,
                   seed: int = 0) -> np.ndarray:
    """``float32 [round(seconds * sr)]``: a new random pitch every ``note_s`` seconds, peak ``peak``.

    Parameters
    ----------
    seconds, sr : length in seconds, sample rate in hz
    note_s : seconds per note
    harmonics : sine partials per note, partial k at level 1/k
    noise : level of the added Gaussian noise, relative to the first partial
    vibrato : depth of a 5.5 hz vibrato, fraction of f0 (0.005 = half a percent)
    legato : fraction of each note that sounds; the rest is silence (1.0 = no gaps)
    peak : the largest absolute sample of the result
    seed : the random pitches and noise
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    note = max(1, int(note_s * sr))
    t = np.arange(n) / sr
    f0 = np.repeat(LOWEST_HZ * 2 ** (rng.integers(0, SEMITONES, n // note + 1) / 12), note)[:n]
    f0 = f0 * (1 + vibrato * np.sin(2 * np.pi * VIBRATO_HZ * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))
    x = x * ((t / note_s) % 1 < legato) + noise * rng.standard_normal(n)
    return (peak * x / (np.abs(x).max() + 1e-12)).astype(np.float32)
