"""Non-musical sound generators: spectra and levels with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from instrumentd.training import noise

SR = 44100


@pytest.mark.parametrize("colour,exponent", noise.NOISE_COLOURS.items())
def test_coloured_noise_has_its_spectral_slope(colour, exponent):
    x = noise.coloured_noise(np.random.default_rng(0), 4 * SR, exponent)
    assert x.dtype == np.float32 and x.shape == (4 * SR,) and np.abs(x).max() == pytest.approx(1.0)
    power = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    bands = [power[(f >= lo) & (f < 2 * lo)].mean() for lo in (100, 200, 400, 800, 1600, 3200)]
    slope = np.polyfit(np.log2([100, 200, 400, 800, 1600, 3200]), np.log2(bands), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.2)


@pytest.mark.parametrize("mains", [50.0, 60.0])
def test_hum_sits_on_the_mains_harmonics(mains):
    x = noise.hum(np.random.default_rng(1), 2 * SR, SR, mains)
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    strongest = f[np.argsort(power)[-20:]]
    assert np.all(np.abs(strongest / mains - np.round(strongest / mains)) * mains < 3)


def test_near_silence_keeps_its_level():
    rng = np.random.default_rng(2)
    x = noise.near_silence(rng, SR, -70.0)
    assert 20 * np.log10(np.abs(x).max()) == pytest.approx(-70.0, abs=0.01)
    assert not noise.near_silence(rng, SR, -np.inf).any()


@pytest.mark.parametrize("name", noise.ENVIRONMENTS)
def test_environment_sounds_are_finite_and_not_silent(name):
    x = noise.ENVIRONMENTS[name](np.random.default_rng(3), 2 * SR, SR)
    assert x.dtype == np.float32 and x.shape == (2 * SR,)
    assert np.isfinite(x).all() and np.abs(x).max() > 0
