"""On-the-fly mixing and effects, against signals with known answers."""

import dataclasses

import numpy as np
import pytest
import torch

from instrumentd.model.classes import CLASSES
from instrumentd.training import audio_augment as A
from instrumentd.training.stem_bank import load_bank, split_stems

from .conftest import SR

DRY = A.MixRecipe(none_share=0.0, second_share=0.0, acc_prob=0.0, drums_prob=0.0, semitones=0.0, reverb_prob=0.0,
                  eq_prob=0.0, band_prob=0.0, compress_prob=0.0, noise_prob=0.0, hum_prob=0.0, level_db=(-20.0, -20.0))


def peak_hz(x: torch.Tensor) -> float:
    spectrum = np.abs(np.fft.rfft(x.numpy() * np.hanning(len(x))))
    return float(np.argmax(spectrum) * SR / len(x))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_varispeed_moves_pitch_by_the_rate():
    t = torch.arange(2 * SR) / SR
    stems = torch.sin(2 * torch.pi * 1000.0 * t)[None].half()
    rate = torch.tensor([1.0, 2 ** (1 / 12), 2 ** (-1 / 12)])
    crops = A.varispeed_crops(stems, torch.zeros(3, dtype=torch.long), rate, SR, gen())
    assert crops.shape == (3, SR)
    assert [peak_hz(c) for c in crops] == pytest.approx([1000.0, 1059.5, 943.9], abs=2.0)


def test_a_dry_mix_is_the_solo_stem_at_the_asked_level(stem_bank):
    bank = load_bank(stem_bank, SR, room_count=2)
    pools, _ = split_stems(bank, 0.5, seed=0)
    batch = A.mix_batch(bank, pools, 8, 3 * SR, DRY, gen())
    assert batch.audio.shape == (8, 3 * SR)
    assert 20 * torch.log10(A.rms(batch.audio)) == pytest.approx(torch.full((8,), -20.0), abs=0.05)
    assert (batch.target.argmax(1) == batch.label).all() and (batch.target.max(1).values == 1).all()
    for audio, label in zip(batch.audio, batch.label):
        f0 = 110.0 * 2 ** (int(label) / 6)
        assert peak_hz(audio) == pytest.approx(f0, rel=0.01)


def test_non_music_clips_get_a_uniform_target(stem_bank):
    bank = load_bank(stem_bank, SR, room_count=2)
    pools, _ = split_stems(bank, 0.5, seed=0)
    batch = A.mix_batch(bank, pools, 16, 3 * SR, dataclasses.replace(A.MixRecipe(), none_share=0.5), gen(3))
    none = batch.label < 0
    assert 0 < int(none.sum()) < 16
    assert batch.target[none] == pytest.approx(torch.full((int(none.sum()), len(CLASSES)), 1 / len(CLASSES)))
    assert batch.target.sum(1) == pytest.approx(torch.ones(16))
    assert batch.audio.abs().max() <= 1.0 and torch.isfinite(batch.audio).all()


def test_a_second_solo_part_splits_the_target_by_power(stem_bank):
    bank = load_bank(stem_bank, SR, room_count=2)
    pools, _ = split_stems(bank, 0.5, seed=0)
    recipe = dataclasses.replace(DRY, second_share=1.0, second_db=(-3.0, -3.0))
    batch = A.mix_batch(bank, pools, 16, 3 * SR, recipe, gen(5))
    two = batch.target.max(1).values < 1
    assert two.sum() > 8  # all but the draws whose second class equals the first
    share = 10 ** (-3 / 10) / (1 + 10 ** (-3 / 10))
    assert batch.target[two].max(1).values == pytest.approx(torch.full((int(two.sum()),), 1 - share), abs=1e-5)


def test_a_second_line_plays_the_same_stem_the_asked_interval_lower(stem_bank):
    bank = load_bank(stem_bank, SR, room_count=2)
    pools, _ = split_stems(bank, 0.5, seed=0)
    recipe = dataclasses.replace(DRY, double_share=1.0, double_semitones=(7.0, 7.0), double_db=(-3.0, -3.0))
    batch = A.mix_batch(bank, pools, 8, 3 * SR, recipe, gen(7))
    assert (batch.target.max(1).values == 1).all() and (batch.target.argmax(1) == batch.label).all()
    for audio, label in zip(batch.audio, batch.label):
        f0 = 110.0 * 2 ** (int(label) / 6)
        spectrum = np.abs(np.fft.rfft(audio.numpy() * np.hanning(len(audio))))
        power = lambda hz: (spectrum[round(hz * len(audio) / SR) - 4:round(hz * len(audio) / SR) + 5] ** 2).sum()
        fifth_below = f0 * 2 ** (-7 / 12)
        assert 10 * np.log10(power(fifth_below) / power(f0)) == pytest.approx(-3.0, abs=0.5)


def cents_track(audio: torch.Tensor, hz: float) -> np.ndarray:
    """The instantaneous frequency of the partial near ``hz`` (its band, +-10 %, as an analytic signal),
    in cents against ``hz``, the first and last 0.1 s left out."""
    spectrum = np.fft.fft(audio.numpy().astype(np.float64))
    freqs = np.fft.fftfreq(len(spectrum), 1 / SR)
    spectrum[(freqs < 0.9 * hz) | (freqs > 1.1 * hz)] = 0  # one partial, positive frequencies: analytic
    phase = np.unwrap(np.angle(np.fft.ifft(spectrum)))
    inst = np.diff(phase) * SR / (2 * np.pi)
    inst = np.convolve(inst, np.ones(441) / 441, mode="same")[SR // 10:-SR // 10]  # 10 ms means
    return 1200 * np.log2(inst / hz)


def test_a_vibrato_swings_the_solo_part_by_the_asked_depth_and_rate(stem_bank):
    bank = load_bank(stem_bank, SR, room_count=2)
    pools, _ = split_stems(bank, 0.5, seed=0)
    recipe = dataclasses.replace(DRY, vibrato_share=1.0, vibrato_cents=(30.0, 30.0), vibrato_hz=(5.0, 5.0))
    batch = A.mix_batch(bank, pools, 4, 3 * SR, recipe, gen(9))
    steady = A.mix_batch(bank, pools, 4, 3 * SR, DRY, gen(9))
    for audio, still, label in zip(batch.audio, steady.audio, batch.label):
        f0 = 110.0 * 2 ** (int(label) / 6)
        still_cents = cents_track(still, f0)
        assert np.ptp(np.percentile(still_cents, [1, 99])) < 8.0  # the stem's noise in the band
        cents = cents_track(audio, f0) - np.median(still_cents)
        assert np.percentile(cents, [1, 99]) == pytest.approx([-30.0, 30.0], abs=4.0)
        crossings = np.count_nonzero(np.diff(np.sign(cents)) > 0)  # upward, once a cycle: 2.8 s at 5 Hz
        assert crossings in (13, 14, 15)
    assert (batch.target == steady.target).all()


def test_vibrato_swing_touches_only_its_share():
    recipe = dataclasses.replace(DRY, vibrato_share=0.3)
    swing = A.vibrato_swing(gen(4), 2000, 1000, SR, recipe, torch.device("cpu"))
    moved = swing.abs().amax(1) > 0
    assert 0.25 < moved.float().mean() < 0.35
    assert swing[:, 0].abs().max() < 1e-3  # every vibrato starts where the read would have started
    assert swing.abs().max() < 0.024 * SR / (2 * np.pi * 4.5) + 1e-3  # depth / angular rate, in samples


def test_room_and_eq_pass_through_when_off_and_convolve_when_on():
    x = torch.randn(2, 4000, generator=gen())
    delta = torch.zeros(1, 500)
    delta[0, 0] = 1.0
    off = dataclasses.replace(DRY, reverb_prob=1.0)
    assert A.room_and_eq(x, delta, gen(), off, SR) == pytest.approx(x, abs=1e-5)
    echo = delta.clone()
    echo[0, 100] = 0.5
    y = A.room_and_eq(x, echo, gen(), off, SR)
    expected = x.clone()
    expected[:, 100:] += 0.5 * x[:, :-100]
    assert y == pytest.approx(expected, abs=1e-5)


def test_compressor_narrows_loud_against_quiet():
    x = torch.cat([0.9 * torch.ones(SR // 2), 0.05 * torch.ones(SR // 2)])[None].repeat(2, 1)
    y = A.compress(x, gen(), dataclasses.replace(DRY, compress_prob=1.0))
    before = float(x[0, :1000].abs().mean() / x[0, -1000:].abs().mean())
    after = float(y[0, :1000].abs().mean() / y[0, -1000:].abs().mean())
    assert after < before / 2


def test_noise_and_hum():
    noise = A.coloured_noise(gen(), 4, SR, torch.device("cpu"))
    assert A.rms(noise) == pytest.approx(torch.ones(4), abs=1e-4)
    hum = A.mains_hum(gen(), 4, SR, SR, torch.device("cpu"))
    for h in hum:
        spectrum = np.abs(np.fft.rfft(h.numpy()))
        strongest = np.argsort(spectrum)[-3:]  # 1 Hz bins: every strong line is a multiple of 50 or 60 Hz
        assert all(k % 50 == 0 for k in strongest) or all(k % 60 == 0 for k in strongest)


def test_recipe_changes_by_name():
    recipe = A.MixRecipe().with_changes("none_share=0.3, acc_db=-24:-6")
    assert recipe.none_share == 0.3 and recipe.acc_db == (-24.0, -6.0) and recipe.hum_prob == A.MixRecipe().hum_prob
    for bad in ("nonesuch=1", "none_share=lots", "acc_db=3"):
        with pytest.raises(A.ParameterError):
            A.MixRecipe().with_changes(bad)
