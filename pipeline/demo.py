"""The bundled demo clip: 12.5 s of music at 44.1 kHz (``pipeline/data/demo.flac``), for benchmarks and ``make demo``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .audio import load_audio
from .config import SAMPLE_RATE

__all__ = ["DEMO_CLIP", "demo_audio"]

DEMO_CLIP = Path(__file__).resolve().parent / "data" / "demo.flac"


def demo_audio(n_samples: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """``float32 [n_samples]`` at ``sr`` hz: the demo clip, repeated as needed."""
    clip = load_audio(DEMO_CLIP, sr)
    return np.resize(clip, n_samples).astype(np.float32)
