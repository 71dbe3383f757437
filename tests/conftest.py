"""Shared fixtures: real fluidsynth renders, synthetic tones with known answers, a CPU/CUDA switch."""

from __future__ import annotations

import shutil
import subprocess
import time

import numpy as np
import pytest
import torch

SR = 44100


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "fluidsynth_available" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)  # every fluidsynth render goes through that fixture
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


def devices() -> list:
    """``cpu`` always, ``cuda`` as a gpu-marked param: parametrize tests over both."""
    return ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture(scope="session")
def fluidsynth_available() -> None:
    if shutil.which("fluidsynth") is None:
        pytest.skip("fluidsynth not installed (make system-deps)")


def tone(freq: float, seconds: float = 3.0, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    """A sine at ``freq`` hz, ``float32 [seconds * sr]``."""
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def notes(freqs, note_s: float = 0.4, rest_s: float = 0.1, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Harmonic notes (4 partials, 1/k) at each of ``freqs`` hz, each ``note_s`` s then ``rest_s`` s of
    silence, over a little white noise: ``float32 [len(freqs) * (note_s + rest_s) * sr]``."""
    t = np.arange(int(round(note_s * sr))) / sr
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms ramps: no clicks
    parts = []
    for f in freqs:
        x = sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 5))
        parts += [0.3 * fade * x / np.abs(x).max(), np.zeros(int(round(rest_s * sr)))]
    x = np.concatenate(parts)
    return (x + 0.003 * np.random.default_rng(seed).standard_normal(len(x))).astype(np.float32)


@pytest.fixture(scope="session")
def renders(fluidsynth_available) -> dict[str, np.ndarray]:
    """Real 3 s fluidsynth renders (FluidR3_GM): a flute melody, piano chords, a violin with vibrato-free notes."""
    from instrumentd.training.midi import Note, Track
    from instrumentd.training.render import render

    flute = Track(73, 0, [Note(p, 0.05 + 0.5 * i, 0.45) for i, p in enumerate((72, 74, 76, 77, 79, 81))])
    piano = Track(0, 1, [Note(p, 0.0, 2.8, 80) for p in (48, 55, 64)])
    violin = Track(40, 2, [Note(p, 0.1 + 0.7 * i, 0.65) for i, p in enumerate((55, 62, 69, 76))])
    return {
        "flute": render([flute], "fluidr3", 3.0),
        "piano": render([piano], "fluidr3", 3.0),
        "violin": render([violin], "fluidr3", 3.0),
        "mix": render([flute, piano], "fluidr3", 3.0),
    }


def start_jackd(name: str) -> subprocess.Popen:
    """A JACK server named ``name`` on the dummy driver (no sound hardware); skips the test without jackd."""
    if shutil.which("jackd") is None:
        pytest.skip("jackd not installed (make system-deps)")
    proc = subprocess.Popen(["jackd", "--no-realtime", "-n", name, "-d", "dummy", "-r", "44100", "-p", "1024"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    if proc.poll() is not None:
        pytest.skip("jackd would not start here")
    return proc


def until(check, timeout: float) -> bool:
    """Poll ``check()`` every 50 ms until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False
