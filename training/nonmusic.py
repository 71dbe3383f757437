"""A non-music check set in the IRMAS test layout: clips with no predominant instrument.

Each clip is ``NAME.wav`` with an empty ``NAME.txt`` (no label). Kinds: speech (espeak-ng, the
``"check"`` pool of languages, voices and words, never used for training stems), drums and
percussion alone (fluidsynth, channel 10), coloured noise, mains hum, digital silence, and other
sounds (wind, applause, clicks, rain). Seeds are drawn in their own stream, apart from any stem bank.
Not for training: it checks that a model says "nothing" where there is nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import soundfile

from instrumentd.pipeline.config import SAMPLE_RATE
from instrumentd.pipeline.errors import ParameterError

from . import noise, speech
from .midi import DRUM_CHANNEL, Track
from .render import render
from .synth import _drums

KINDS = ("speech", "drums", "noise", "hum", "silence", "env")
SECONDS = (5.0, 10.0)
STREAM = 7919  # seed stream of the check set, apart from the stem banks'


def _clip(kind: str, rng: np.random.Generator, seconds: float, soundfont: str) -> np.ndarray:
    n = int(round(seconds * SAMPLE_RATE))
    if kind == "speech":
        return speech.talk(rng, n, SAMPLE_RATE, "check")
    if kind == "drums":
        notes = _drums(rng, 4 * 60.0 / float(rng.uniform(70, 170)), 0.0, seconds, int(rng.integers(60, 120)))
        return render([Track(0, DRUM_CHANNEL, notes, 100)], soundfont, seconds, SAMPLE_RATE)
    if kind == "noise":
        return noise.coloured_noise(rng, n, float(rng.choice(list(noise.NOISE_COLOURS.values()))))
    if kind == "hum":
        return noise.hum(rng, n, SAMPLE_RATE, float(rng.choice([50.0, 60.0])))
    if kind == "silence":
        return np.zeros(n, np.float32)
    return noise.ENVIRONMENTS[str(rng.choice(list(noise.ENVIRONMENTS)))](rng, n, SAMPLE_RATE)


def write_check_set(out: str | Path, clips: int = 10, seed: int = 0, soundfont: str = "fluidr3",
                    on_progress: Callable[[int], None] | None = None) -> list[Path]:
    """Write ``clips`` clips of every kind in :data:`KINDS` under ``out`` (5-10 s, peak -12 to -1 dBFS,
    silence all zeros); returns the .wav paths."""
    if clips < 1:
        raise ParameterError(f"--clips must be >= 1, got {clips}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ki, kind in enumerate(KINDS):
        for k in range(clips):
            rng = np.random.default_rng([STREAM, seed, ki, k])
            seconds = round(float(rng.uniform(*SECONDS)), 2)
            audio = _clip(kind, rng, seconds, soundfont)
            peak = float(np.abs(audio).max())
            if peak > 0:
                audio = audio * (10 ** (float(rng.uniform(-12, -1)) / 20) / peak)
            path = out / f"nonmusic-{kind}-{k + 1:03d}.wav"
            soundfile.write(str(path), audio.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
            path.with_suffix(".txt").write_text("")
            paths.append(path)
            if on_progress:
                on_progress(1)
    return paths
