"""Non-musical sounds generated with numpy: coloured noise, mains hum, near-silence, wind, applause, clicks, rain.

Every generator takes a random generator, a length in samples and the sample rate, and returns
``float32 [samples]``; levels are arbitrary (callers normalise) except :func:`near_silence`, whose
level is the point.
"""

from __future__ import annotations

import numpy as np

NOISE_COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power falls as 1 / f**exponent


def coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise whose power spectrum falls as ``1 / f**exponent`` (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spectrum / f ** (exponent / 2), n)
    return (x / (np.abs(x).max() + 1e-12)).astype(np.float32)


def hum(rng: np.random.Generator, n: int, sr: int, mains_hz: float) -> np.ndarray:
    """Mains hum: ``mains_hz`` (50 or 60) and 2-12 harmonics with random decaying levels and phases,
    a slow level wobble, and a little hiss."""
    t = np.arange(n) / sr
    k = np.arange(1, int(rng.integers(3, 13)) + 1)
    amps = rng.uniform(0.2, 1.0, len(k)) / k ** rng.uniform(0.3, 1.5)
    if rng.random() < 0.5:  # rectifier buzz: even harmonics dominate
        amps[1::2] *= 3.0
    phases = rng.uniform(0, 2 * np.pi, len(k))
    drift = 1 + 0.002 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t)
    x = (amps[:, None] * np.sin(2 * np.pi * mains_hz * k[:, None] * t * drift + phases[:, None])).sum(0)
    x *= 1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.1, 1.0) * t)
    x += coloured_noise(rng, n, 1.0) * float(rng.uniform(0.0, 0.05)) * np.abs(x).max()
    return x.astype(np.float32)


def near_silence(rng: np.random.Generator, n: int, level_db: float) -> np.ndarray:
    """Hiss at ``level_db`` dBFS peak (e.g. -90 to -50); ``-inf`` gives digital silence."""
    if not np.isfinite(level_db):
        return np.zeros(n, np.float32)
    x = coloured_noise(rng, n, float(rng.uniform(0.0, 1.0)))
    return (x * 10 ** (level_db / 20)).astype(np.float32)


def wind(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Gusts: brown/pink noise through a slowly swept band-pass, with a slow random level envelope."""
    import scipy.signal  # here: scipy takes most of a second to load, the command line's --help none

    x = coloured_noise(rng, n, float(rng.uniform(1.0, 2.0)))
    centre = float(rng.uniform(150, 900))
    sos = scipy.signal.butter(2, [centre / 2, min(centre * 3, sr / 2 - 1)], "bandpass", fs=sr, output="sos")
    x = scipy.signal.sosfilt(sos, x)
    return (x * _slow_envelope(rng, n, sr, 0.3, 1.5)).astype(np.float32)


def applause(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Many claps: short band-passed noise bursts at Poisson times, 20-200 claps per second."""
    import scipy.signal  # here: scipy takes most of a second to load, the command line's --help none

    rate = float(rng.uniform(20, 200))
    times = rng.uniform(0, n, int(rate * n / sr)).astype(int)
    clap_len = int(0.012 * sr)
    env = np.exp(-np.arange(clap_len) / (0.003 * sr))
    impulses = np.zeros(n)
    np.add.at(impulses, times, rng.uniform(0.3, 1.0, len(times)))
    x = scipy.signal.fftconvolve(impulses, env, mode="full")[:n] * rng.standard_normal(n)
    sos = scipy.signal.butter(2, [float(rng.uniform(400, 1000)), float(rng.uniform(3000, 8000))], "bandpass",
                              fs=sr, output="sos")
    return (scipy.signal.sosfilt(sos, x) * _slow_envelope(rng, n, sr, 0.2, 1.0)).astype(np.float32)


def clicks(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Irregular clicks and ticks (a clock, typing, a crackling record): 2-30 per second over faint hiss."""
    times = np.sort(rng.uniform(0, n, int(rng.uniform(2, 30) * n / sr)).astype(int))
    x = coloured_noise(rng, n, 1.0) * 0.01
    ring = np.exp(-np.arange(int(0.004 * sr)) / (0.0008 * sr)) * np.sin(
        2 * np.pi * float(rng.uniform(1500, 6000)) * np.arange(int(0.004 * sr)) / sr)
    for t in times:
        seg = ring[: n - t] * rng.uniform(0.2, 1.0)
        x[t : t + len(seg)] += seg
    return x.astype(np.float32)


def rain(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Rain: pink noise under dense tiny drops (high-passed impulses)."""
    import scipy.signal  # here: scipy takes most of a second to load, the command line's --help none

    x = coloured_noise(rng, n, 1.0) * float(rng.uniform(0.1, 0.4))
    drops = np.zeros(n)
    idx = rng.integers(0, n, int(rng.uniform(200, 2000) * n / sr))
    drops[idx] = rng.uniform(-1, 1, len(idx))
    sos = scipy.signal.butter(4, float(rng.uniform(1500, 5000)), "highpass", fs=sr, output="sos")
    return (x + scipy.signal.sosfilt(sos, drops)).astype(np.float32)


ENVIRONMENTS = {"wind": wind, "applause": applause, "clicks": clicks, "rain": rain}


def _slow_envelope(rng: np.random.Generator, n: int, sr: int, lo_hz: float, hi_hz: float) -> np.ndarray:
    """A positive random envelope varying at ``lo_hz``-``hi_hz``: ``[n]`` between about 0.2 and 1."""
    points = max(2, int(n / sr * rng.uniform(lo_hz, hi_hz)) + 2)
    knots = rng.uniform(0.2, 1.0, points)
    return np.interp(np.arange(n), np.linspace(0, n - 1, points), knots)
