"""Harmonic test tones: the length, the peak, and notes pYIN hears at the pitches drawn."""

import librosa
import numpy as np

from instrumentd.training.tones import LOWEST_HZ, SEMITONES, harmonic_notes

SR = 44100


def test_length_dtype_and_peak():
    x = harmonic_notes(1.0, sr=SR, peak=0.3)
    assert x.shape == (SR,) and x.dtype == np.float32
    assert abs(np.abs(x).max() - 0.3) < 1e-6


def test_the_seed_decides_the_notes():
    np.testing.assert_array_equal(harmonic_notes(0.5, seed=3), harmonic_notes(0.5, seed=3))
    assert not np.array_equal(harmonic_notes(0.5, seed=3), harmonic_notes(0.5, seed=4))


def test_legato_leaves_silence_between_notes():
    x = harmonic_notes(1.0, sr=SR, note_s=0.25, noise=0.0, legato=0.5)
    gap = x[int(0.13 * SR): int(0.24 * SR)]  # the second half of the first note
    assert np.abs(gap).max() == 0.0 and np.abs(x[: int(0.12 * SR)]).max() > 0.1


def test_each_note_is_voiced_at_a_pitch_of_the_drawn_range():
    x = harmonic_notes(1.0, sr=SR, note_s=0.5, noise=0.0)
    f0, voiced, _ = librosa.pyin(x[: SR // 2], fmin=65.41, fmax=2093.0, sr=SR, frame_length=4096, hop_length=1323)
    steady = f0[4:-4][voiced[4:-4]]
    assert len(steady) > 5
    semitones = 12 * np.log2(np.median(steady) / LOWEST_HZ)
    assert abs(semitones - round(semitones)) < 0.2 and 0 <= round(semitones) < SEMITONES
