"""Is a window speech? Silero VAD, whose weights ship inside its wheel (nothing is downloaded).

Used only to say *why* a window names no instrument ("speech" rather than "no instrument"): the
detector also fires on singing, so it never decides whether an instrument is heard. Without the
``silero-vad`` package :func:`speech_detector` returns None and the reason stays "no instrument".
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

VAD_RATE = 16000  # hz, the detector's input rate
SPEECH_PROBABILITY = 0.5  # per 32 ms frame
SPEECH_SHARE = 0.3  # share of a window's frames that must be speech

SpeechDetector = Callable[[np.ndarray, int], np.ndarray]


class SileroSpeech:
    """``detector(windows: float32 [n, samples], sample_rate) -> bool [n]``: speech in each window."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    @torch.inference_mode()
    def __call__(self, windows: np.ndarray, sample_rate: int) -> np.ndarray:
        import soxr

        out = np.zeros(len(windows), dtype=bool)
        for i, window in enumerate(np.atleast_2d(windows)):
            audio = soxr.resample(np.asarray(window, np.float32), sample_rate, VAD_RATE).astype(np.float32)
            self.model.reset_states()
            probs = self.model.audio_forward(torch.from_numpy(audio)[None], sr=VAD_RATE)
            out[i] = bool((probs > SPEECH_PROBABILITY).float().mean() >= SPEECH_SHARE)
        return out


def speech_detector() -> SpeechDetector | None:
    """The Silero detector on the CPU, or None when the package is not installed."""
    try:
        from silero_vad import load_silero_vad
    except ImportError:
        return None
    return SileroSpeech(load_silero_vad())
