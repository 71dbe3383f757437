"""Sung voice: real espeak-ng syllables through WORLD; the sung f0 (the pipeline's pYIN) follows the melody."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from instrumentd.pipeline.config import DEFAULT
from instrumentd.pipeline.pitch import torch_pyin
from instrumentd.training import voice
from instrumentd.training.midi import Note

SR = 44100
MELODY = {  # gender -> a legato line with a leap, a long note for vibrato and a rest
    "male": [Note(50, 0.2, 0.5), Note(52, 0.7, 0.5), Note(55, 1.2, 1.2), Note(53, 2.7, 0.6), Note(50, 3.3, 0.6)],
    "female": [Note(67, 0.2, 0.5), Note(69, 0.7, 0.5), Note(72, 1.2, 1.2), Note(71, 2.7, 0.6), Note(67, 3.3, 0.6)],
}


@pytest.fixture(scope="module")
def world():
    if not voice.available():
        pytest.skip("espeak-ng or pyworld not installed (make system-deps; pip install pyworld)")


def _cents(f, ref):
    return 1200 * np.log2(f / ref)


@pytest.mark.parametrize("gender,language,variant", [("male", "en", "m1"), ("female", "en", "f1"),
                                                     ("male", "it", "klatt"), ("female", "de", "f4")])
def test_sung_pitch_follows_the_melody(world, gender, language, variant):
    rng = np.random.default_rng(4)
    singer = dataclasses.replace(voice.random_singer(rng, gender, language), voice=f"{language}+{variant}")
    notes = MELODY[gender]
    audio, _, f0 = voice.sing(rng, 4.0, SR, singer, notes)
    assert audio.shape == (4 * SR,) and np.isfinite(audio).all()
    heard = torch_pyin(audio[None], DEFAULT)[0]
    hop_s = DEFAULT.hop_length / SR
    frame_s = voice.FRAME_MS / 1000
    checked = 0
    for note in notes:
        # pYIN's 93 ms frames: keep frames whose window lies inside the note
        times = np.arange(note.start + 0.1, note.start + note.duration - 0.1, hop_s)
        pitch = heard[np.round(times / hop_s).astype(int)]
        # the sung contour as pYIN can resolve it: averaged (in cents) over its 93 ms frame
        window = int(round(DEFAULT.pitch_frame_length / SR / frame_s))
        smooth = 2 ** (np.convolve(np.log2(np.where(f0 > 0, f0, np.nan)), np.ones(window) / window, "same"))
        sung = smooth[np.round(times / frame_s).astype(int)]
        ok = np.isfinite(pitch) & np.isfinite(sung)
        assert ok.mean() > 0.5, f"note {note.pitch} mostly unvoiced"
        # frame by frame within 50 cents of the sung contour (vibrato and drift included) ...
        assert np.mean(np.abs(_cents(pitch[ok], sung[ok])) < 50) > 0.9
        # ... and the note's median within 50 cents of the requested pitch
        assert abs(np.median(_cents(pitch[ok], 440 * 2 ** ((note.pitch - 69) / 12)))) < 50
        checked += ok.sum()
    assert checked > 50


def test_syllables_split_into_consonants_and_a_voiced_vowel(world):
    syl = voice.analyse("mar", "it+m1", 40)
    assert 0 < syl.start < syl.end < len(syl.sp)  # an onset (m) and a coda (r)
    assert syl.voiced[syl.start : syl.end].all()
    assert syl.sp.shape == syl.ap.shape and syl.sp.shape[0] == len(syl.voiced)
    assert voice.analyse("mar", "it+m1", 40) is syl  # analysed once per process


def test_stretch_keeps_the_ends_and_stretches_the_middle():
    pos = voice.stretch_index(20, 200)
    assert len(pos) == 200 and np.all(np.diff(pos) >= 0)
    assert pos[0] == 0 and pos[-1] == 19
    assert np.all(np.diff(pos[:5]) == 1) and np.all(np.diff(pos[-5:]) == 1)
    assert len(voice.stretch_index(20, 8)) == 8


def test_vibrato_has_the_rate_and_depth_asked_for():
    rng = np.random.default_rng(0)
    frames = 600
    f0 = voice.pitch_contour(rng, [Note(60, 0.0, 3.0)], frames)
    cents = _cents(f0, 440 * 2 ** ((60 - 69) / 12))[200:600]  # after the vibrato's onset and fade-in
    spectrum = np.abs(np.fft.rfft(cents - cents.mean(), 4096))
    rate = np.fft.rfftfreq(4096, voice.FRAME_MS / 1000)[np.argmax(spectrum)]
    assert 4.3 < rate < 6.8
    assert 20 <= np.percentile(np.abs(cents - np.median(cents)), 95) <= 100


def test_layers_sing_the_same_line(world):
    audio, notes, _ = voice.sing(np.random.default_rng(1), 2.0, SR, layers=3)
    assert audio.shape == (2 * SR,) and np.isfinite(audio).all() and np.abs(audio).max() > 0
    assert notes and all(n.start + n.duration <= 2.0 + 1e-9 for n in notes)
