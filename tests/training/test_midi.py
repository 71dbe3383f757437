"""MIDI files: controller and pitch-bend events, heard through real fluidsynth renders."""

from __future__ import annotations

import numpy as np
import pytest

from instrumentd.training.midi import PITCH_BEND, Control, Note, Track, to_bytes
from instrumentd.training.render import render

SR = 44100


def test_controls_are_sent_before_notes_that_start_with_them():
    data = to_bytes([Track(40, 0, [Note(60, 0.5, 0.5)], controls=[Control(0.5, 11, 64), Control(0.5, PITCH_BEND, 4096)])])
    bend, cc11, note_on = data.find(bytes([0xE0, 0, 0x60])), data.find(bytes([0xB0, 11, 64])), data.find(bytes([0x90, 60]))
    assert 0 < cc11 < note_on and 0 < bend < note_on


def _f0(audio):
    """The strongest partial (a flute's fundamental), hz, to a fraction of the FFT bin."""
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1 : k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * SR / len(audio)


def test_pitch_bend_moves_the_pitch_by_its_range(timgm6mb):
    plain = Track(73, 0, [Note(69, 0.0, 1.5)])  # flute, A4
    bent = Track(73, 0, [Note(69, 0.0, 1.5)], controls=[Control(0.0, PITCH_BEND, 8191)], bend_range=2)
    f_plain = _f0(render([plain], timgm6mb, 1.5, SR)[SR // 4 :])
    f_bent = _f0(render([bent], timgm6mb, 1.5, SR)[SR // 4 :])
    assert 1200 * np.log2(f_bent / f_plain) == pytest.approx(200, abs=25)


def test_expression_controller_lowers_the_level(timgm6mb):
    loud = render([Track(40, 0, [Note(67, 0.0, 1.5)])], timgm6mb, 1.5, SR)
    soft = render([Track(40, 0, [Note(67, 0.0, 1.5)], controls=[Control(0.0, 11, 40)])], timgm6mb, 1.5, SR)
    ratio_db = 20 * np.log10(np.sqrt(np.mean(soft**2)) / np.sqrt(np.mean(loud**2)))
    assert ratio_db < -10  # GM: 40 dB * log10(40/127) = -20 dB
